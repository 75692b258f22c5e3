"""The chat model engine: one causal LM, many requests decoded together (continuous batching).

It knows nothing of HTTP, websockets or event loops (inference/backends/local.py and
inference/server/ do that). The shape is vLLM's, shrunk to what a reader can hold in their head:

- A KV cache of `slots` rows, each `capacity` tokens long, allocated once per layer as
  (rows, kv_heads, capacity + 1, head_dim). A request owns one row from admission until it ends;
  its tokens sit at columns [0, length). Column `capacity` is scratch space that rows without a
  token to decode write to, so a step never disturbs a row that is being prefilled.
- `step()` is one scheduling iteration, run on the model thread: drop cancelled requests, admit
  waiting ones into free rows (lowest first), prefill prompt chunks of `prefill_chunk` tokens up
  to `prefill_budget` tokens (so running streams stall for that long at most), then ONE forward
  pass that decodes the next token of every running request. Requests join and leave at these
  token boundaries; a cancelled request's row is free at the next step.
- Prefix cache: the keys/values of a prompt's leading system message (the instructions every
  answer shares) are kept, and a request starting with the same tokens copies them instead of
  prefilling them. Prompts are always cut at the prefix's end, hit or miss, so the numbers match.
- The forward pass is written out for the Llama family (Llama, Mistral, Qwen2: SmolLM2 is a
  Llama) over the Hugging Face modules' weights (a fine-tuned adapter is merged into them
  first). Doing it ourselves rather than through `model(...)` gives per-row positions and write
  columns in one batched step, and drops the per-call mask building and cache bookkeeping of the
  generic path.
- Batch invariance: a request's greedy output is the same alone or batched (tests/test_batching.py
  checks it). A decode step runs the rows up to the highest one in use, rounded up to ROW_QUANTUM
  (4): measured on CPU, the kernels then give each row the same bits whatever the batch. bfloat16
  matmuls (oneDNN) are invariant as they are; float32 ones (MKL) only when taken 4 rows at a time
  (LlamaForward.row_linear). With quantised weights the quantum is 1 (those kernels are
  row-invariant). Decode is bound by reading the weights, so 8 rows cost little more than 1: that
  is why batching pays.
- Quantised decode (CHAT_WEIGHTS=int4, the CPU default): decode steps multiply by 4-bit weights
  (torch's CPU int4 kernel; the 4-bit values are the GGUF's own, quant.py) and an int8 LM head,
  reading a quarter of the bytes; prompts are prefilled with the float weights, where the matmuls
  are compute-bound and the float kernels fastest. A LoRA adapter runs beside the 4-bit weights.

Why not transformers' own continuous batching (`ContinuousBatchingManager`, transformers 5.x: it
has add_request, cancel_request and per-request logits-processor arguments): it runs the model in
its own generation thread, while every torch and FAISS call of a Parley process must stay on the
one model thread (inference/runtime.py: a second thread using torch halved decode speed here), and
it makes no promise that a request's greedy output is independent of the batch around it. We did
not benchmark it against this engine.

One module per concept:

- `scheduler.py`: `Engine`, the running batch: admission, prefill chunks, decode steps, sampling,
  cancellation and limits. `Request` and its listener events.
- `forward.py`: `LlamaForward`, the batched forward pass over the slot KV cache.
- `loading.py`: the model and tokenizer from a folder, with a fine-tuned adapter merged in.
- `quant.py`: the int4/int8 weight-only linears of decode steps, and LoRA beside them.
- `decoding.py`: `IncrementalDecoder`, token ids back to streamed text.
- `device.py`: INFERENCE_DEVICE and CHAT_DTYPE resolved (also used by fine-tuning and images).

Nothing is re-exported here: importing `inference.engine.device` must not load transformers.
"""
