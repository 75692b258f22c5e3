"""Actions: the assistant looks things up in the company's own systems (issue 20).

An admin defines an `Action` (answers/models.py): example questions, the parameters it needs
with their patterns, an endpoint (HTTPS, or a tool of an MCP server), a secret kept encrypted, a
timeout and a reply template. The chat and the desk ask this package:

1. match (match.py): the enabled action whose example questions are closest to the question
   (embedding similarity at or above ACTIONS_MATCH_THRESHOLD, as pinned answers are matched);
2. extract (params.py): its parameters from the customer's own words in this conversation only
   (each value fully matches the parameter's pattern; patterns run with a time limit);
3. call (http.py, mcp.py): the endpoint, behind the SSRF rules of retrieval/fetch.py (public
   addresses only unless allow-listed, HTTPS only unless allowed, no redirects), with a size cap,
   a timeout, and JSON parsed as data only;
4. reply (render.py): the reply template rendered over the system's JSON: the system's values
   reach the customer through the template, never through a model, so the reply is verified by
   construction;
5. record (runner.py): every attempt as an `ActionCall` (parameters redacted) and in the audit
   log, counted against the limits per visitor and per action (limits.py).

`runner.plan_lookup` and `runner.run_lookup` are the interface callers use.
"""
