"""Local models through transformers: `loading` turns a spec into weights on disk and a loaded model,
`generation` runs it (batched generation, label scoring, streaming)."""
