"""Remote models behind an OpenAI-compatible server: `endpoints` (the endpoints file, URL and key policy) and
`client` (HTTP pool, retries, streaming, token counting, the backend)."""
