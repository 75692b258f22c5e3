"""Every write to the knowledge base, by concept: creating documents and queueing their
processing (`create`), processing them into chunks and vectors (`ingest`), deleting them
(`delete`).

A document is created first (pending) from a path, an upload or a URL, then processed in three
stages: prepare (its original is read, hashed, parsed by a loader and chunked along its
structure), embed, and store (its chunks and vectors replace the old ones in one transaction and
one index write). Processing runs in a Celery task for uploads and URLs (queued by name, see
`create.do_queue_processing`), one document at a time with its progress saved as it goes;
`manage.py ingest` and `do_ingest_path` run it inline on groups of documents (one embedder call
and one index write per group, see `ingest.do_ingest_files`). Any failure is recorded on the
document (status, error code, message) and never affects other documents, except a failure to
embed or store a group, which fails that group's documents.
"""
