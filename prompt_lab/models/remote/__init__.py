"""Remote models behind an OpenAI-compatible server: `endpoints` (the endpoints file, URL and key policy), `client`
(HTTP pool, retries, streaming, token counting, the backend) and `replies` (a server's error words and model list)."""
