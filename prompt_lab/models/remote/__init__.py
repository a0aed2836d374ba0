"""Remote models behind an OpenAI-compatible server: `endpoints` (the endpoints file, URL and key policy), `client`
(retries, failover, streaming, token counting, the backend), `replicas` (an endpoint's servers: HTTP pools,
per-replica limits, which are down) and `replies` (a server's error words and model list)."""
