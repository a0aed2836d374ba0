"""The OpenAI-compatible chat-completions client: bounded retries, failover between an endpoint's replicas,
server-sent-event streaming, token counting, and the backend (vLLM, TGI, Ollama, llama.cpp's server,
`transformers serve`, hosted APIs), through httpx. Endpoints and keys: see remote.endpoints; HTTP pools, per-replica
limits and replica health: remote.replicas."""
from __future__ import annotations

import json
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from prompt_lab.errors import CancelledError, PromptLabError
from prompt_lab.models.base import Generation, GenerationParams, ProgressFn, StreamEvent
from prompt_lab.models.remote.endpoints import RemoteModelError, known_keys, parse_spec
from prompt_lab.models.remote.replicas import Replica, ReplicaFailed, http_client, replica_set, with_failover
from prompt_lab.models.remote.replies import ModelListing, error_detail, list_models, root_reason
from prompt_lab.models.secrets import scrub, scrub_cut

RETRY_STATUS = {408, 429, 500, 502, 503, 504}


def _finish_reason(server_reason: str | None, text: str, stop: list[str]) -> tuple[str, str]:
    """Cut the text at the first stop string (servers may ignore `stop`) and name why it ended."""
    cut = [text.find(s) for s in stop if s and s in text]
    if cut:
        return text[: min(cut)], "stop"
    if server_reason == "length":
        return text, "length"
    return text, "eos" if server_reason in (None, "stop", "eos", "eos_token", "end_turn") else str(server_reason)


class _EitherSet:
    """is_set() of either event: the caller's Stop, or the batch's own abort after a failed request."""

    def __init__(self, *events):
        self.events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)


class OpenAIBackend:
    """A model behind an OpenAI-compatible /chat/completions endpoint."""

    device = "remote"
    is_local = False
    can_tune = False  # no weights here to train

    def __init__(self, spec: str):
        self.spec = spec.strip()
        self.endpoint, self.model = parse_spec(self.spec)
        self.revision = f"{self.model}@{self.endpoint.location}"
        self._tokenizer = None
        self._tokenizer_lock = threading.Lock()

    # --- prompts and tokens -------------------------------------------------------------------------------
    def format_prompt(self, prompt) -> str:
        """The exact messages sent, as JSON. Chat APIs cannot continue a started answer, so a strategy's
        answer prefill (the CoT trigger) joins the last user turn instead. A chat API takes messages, never raw
        text: a prompt in the raw format is refused in words."""
        if prompt.format == "raw":
            raise RemoteModelError(f"'{self.spec}' is served through a chat API, which takes messages: the raw prompt "
                                   "format needs a local model (a folder, a .gguf file or the default); use format "
                                   "'chat' for this model")
        return json.dumps(prompt.as_chat_without_prefill(), ensure_ascii=False, indent=1)

    def prompt_format(self, prompt) -> str:
        return "chat"

    @staticmethod
    def messages_of(text: str) -> list[dict]:
        try:
            messages = json.loads(text)
            if isinstance(messages, list) and all(isinstance(m, dict) and "role" in m for m in messages):
                return messages
        except json.JSONDecodeError:
            pass
        return [{"role": "user", "content": text}]

    def _local_tokenizer(self):
        """The endpoint's configured tokenizer folder, if any (loaded once)."""
        if not self.endpoint.tokenizer:
            return None
        with self._tokenizer_lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer

                try:
                    self._tokenizer = AutoTokenizer.from_pretrained(str(Path(self.endpoint.tokenizer).expanduser()))
                except OSError as exc:
                    raise RemoteModelError(f"endpoint '{self.endpoint.name}': tokenizer "
                                           f"'{self.endpoint.tokenizer}' could not be loaded: {exc}") from None
            return self._tokenizer

    def count_tokens(self, text: str) -> int:
        """Tokens of a prompt (JSON messages) or a completion, counted here: exactly with the endpoint's
        tokenizer when one is configured, else estimated at ~4 characters per token."""
        return self._count(text, prompt=text.lstrip().startswith("["))[0]

    def _count(self, text: str, prompt: bool = True) -> tuple[int, str]:
        """(count, source) of a prompt (JSON messages: chat template included) or of a completion."""
        tokenizer = self._local_tokenizer()
        messages = self.messages_of(text) if prompt else None
        if tokenizer is not None:
            if messages is not None and getattr(tokenizer, "chat_template", None):
                rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
                return len(tokenizer(rendered, add_special_tokens=False)["input_ids"]), "local"
            plain = "\n".join(m.get("content", "") for m in messages) if messages is not None else text
            return len(tokenizer(plain, add_special_tokens=False)["input_ids"]), "local"
        plain = "\n".join(str(m.get("content", "")) for m in messages) if messages is not None else text
        overhead = 4 * len(messages) if messages is not None else 0
        return math.ceil(len(plain) / 4) + overhead, "estimate"

    # --- HTTP -----------------------------------------------------------------------------------------------
    def _body(self, messages: list[dict], params: GenerationParams, n: int, seed: int, stream: bool) -> dict:
        body = {"model": self.model, "messages": messages, "max_tokens": params.max_new_tokens,
                "temperature": params.temperature, "seed": seed}
        if params.top_p < 1:
            body["top_p"] = params.top_p
        if params.stop:
            body["stop"] = list(params.stop)[:4]  # the OpenAI API takes at most 4; all are applied here too
        if n > 1:
            body["n"] = n
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        return body

    def _error(self, response, url: str) -> RemoteModelError:
        """A plain message for an HTTP error answer of the server at url; the key is never part of it."""
        code = response.status_code
        detail = self._excerpt(error_detail(response), 300)
        where = f"{url} (model '{self.model}')"
        if code in (401, 403):
            return RemoteModelError(f"{where} refused the API key (HTTP {code}: {detail}). Set a valid key in the "
                                    f"environment variable {self.endpoint.key_hint}.")
        if code == 404 or (code in (400, 422) and "model" in detail.lower()):
            served = self.served_models()
            listing = f"it serves: {', '.join(served)}" if served else "it did not list its models"
            return RemoteModelError(f"{where}: the server does not know this model (HTTP {code}: {detail}); "
                                    f"{listing}")
        if code in RETRY_STATUS:
            return RemoteModelError(f"{where} answered HTTP {code} {self.endpoint.max_retries + 1} times "
                                    f"(retried with backoff, then gave up): {detail}")
        return RemoteModelError(f"{where} rejected the request (HTTP {code}): {detail}")

    def _scrub(self, text: str) -> str:
        """Every form of every key this process may send removed from text (see secrets.scrub): the one filter
        for what came from the server, and the last one on every error this backend raises."""
        return scrub(text, known_keys(self.endpoint.api_key_env))

    def _excerpt(self, text: str, limit: int) -> str:
        """The start of a server's text for a message: scrubbed whole first, then cut (no key prefix survives)."""
        return scrub_cut(text, known_keys(self.endpoint.api_key_env), limit)

    def _clean(self, exc: BaseException) -> BaseException:
        """The exception to raise to callers: the same one, unless its message holds a key (a path that forgot
        to scrub): then a RemoteModelError with the scrubbed message and no chained cause."""
        message = str(exc)
        clean = self._scrub(message)
        if clean == message:
            return exc
        error = type(exc)(clean) if isinstance(exc, PromptLabError) else RemoteModelError(clean)
        error.__suppress_context__ = True
        return error

    def served_models(self) -> list[str]:
        """Model ids from GET /models ([] when the server lists none or cannot be asked)."""
        return self.model_listing().ids

    def model_listing(self) -> ModelListing:
        """GET /models: the ids the server lists, or why it lists none (its status and words, scrubbed); with
        replicas, the first one that lists its models."""
        key, listing = self.endpoint.api_key(), ModelListing()
        for url in self.endpoint.replicas:
            listing = list_models(http_client(self.endpoint, url, key), known_keys(self.endpoint.api_key_env))
            if listing.problem is None:
                break
        return listing

    def _transport_error(self, exc, url: str) -> RemoteModelError:
        import httpx

        where = f"{url} (model '{self.model}')"
        if isinstance(exc, httpx.TimeoutException):
            return RemoteModelError(f"{where} did not answer within {self.endpoint.timeout_s:g} s "
                                    f"({type(exc).__name__}); raise timeout_s for this endpoint or ask for fewer "
                                    "tokens")
        if isinstance(exc, httpx.ConnectError):
            return RemoteModelError(f"could not reach {url} "
                                    f"({self._excerpt(root_reason(exc), 200)}). Is the server running, and is the "
                                    "address (host, port, /v1 path) right?")
        return RemoteModelError(f"{where}: the connection failed ({type(exc).__name__}: "
                                f"{self._excerpt(root_reason(exc), 200)})")

    def _send(self, body: dict, cancel: threading.Event | None, on_text: Callable[[str], None] | None = None):
        """POST /chat/completions to the least busy live replica of the endpoint; one that fails (unreachable,
        connection lost, timeout, 429/5xx after its retries) is marked down and the request goes to the next.

        Returns (choices: list of (text, finish_reason), usage dict or None, served model, seconds).
        With on_text the answer is streamed (server-sent events) and on_text gets the text so far.
        """
        key, replicas = self.endpoint.api_key(), replica_set(self.endpoint)
        return with_failover(replicas, lambda replica: self._send_to(
            replica, replicas, http_client(self.endpoint, replica.url, key), body, cancel, on_text),
            f"endpoint '{self.endpoint.name}' (model '{self.model}')", self._scrub, cancel)

    def _send_to(self, replica: Replica, replicas, client, body: dict, cancel, on_text):
        """One replica's tries at a request (the first slot is held already), with bounded retries on 429/5xx
        (exponential backoff, Retry-After honoured). Raises ReplicaFailed where another replica may do better."""
        import httpx

        attempt = 0
        while True:
            try:
                start = time.perf_counter()
                if body.get("stream"):
                    with client.stream("POST", "chat/completions", json=body) as response:
                        if response.is_success:
                            return (*self._read_stream(response, cancel, on_text, replica.url),
                                    time.perf_counter() - start)
                        response.read()
                else:
                    response = client.post("chat/completions", json=body)
                    if response.is_success:
                        return (*self._read_json(response, replica.url), time.perf_counter() - start)
            except httpx.HTTPError as exc:
                raise ReplicaFailed(self._transport_error(exc, replica.url)) from None
            finally:
                replicas.release(replica)
            if response.status_code not in RETRY_STATUS:  # the request's own fault (400, 401, 404): no failover
                raise self._error(response, replica.url)
            if attempt >= self.endpoint.max_retries:
                raise ReplicaFailed(self._error(response, replica.url))
            delay = min(8.0, 0.5 * 2 ** attempt) * (1 + random.random() * 0.25)
            retry_after = response.headers.get("retry-after", "")
            if retry_after.replace(".", "", 1).isdigit():
                delay = min(30.0, max(delay, float(retry_after)))
            attempt += 1
            time.sleep(delay)
            if cancel is not None and cancel.is_set():
                raise CancelledError("generation stopped")
            replicas.acquire_on(replica, cancel)

    def _read_json(self, response, url: str = ""):
        try:
            data = response.json()
            choices = [(self._scrub((c.get("message") or {}).get("content") or ""), c.get("finish_reason"))
                       for c in sorted(data["choices"], key=lambda c: c.get("index", 0))]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RemoteModelError(f"{url or self.endpoint.base_url}: the answer is not a chat completion "
                                   f"({self._excerpt(response.text, 200)!r})") from None
        return choices, data.get("usage"), self._scrub(str(data.get("model") or "")) or None

    def _read_stream(self, response, cancel, on_text, url: str):
        text, reason, usage, served, events, other = "", None, None, None, 0, ""
        for line in response.iter_lines():
            if cancel is not None and cancel.is_set():  # stopped mid-answer: keep the text so far
                return [(self._scrub(text), "cancelled")], usage, served
            if not line.startswith("data:"):
                other = other if len(other) > 2000 else f"{other}{line}\n"
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                chunk = json.loads(payload)
            except json.JSONDecodeError:
                continue
            if not isinstance(chunk, dict):
                continue
            events += 1
            served = self._scrub(str(chunk.get("model") or "")) or served
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    text += piece
                    if on_text is not None:
                        on_text(self._scrub(text))
                reason = choice.get("finish_reason") or reason
        if not events:  # a 200 that is no event stream (a JSON body, a page): not an empty answer
            raise RemoteModelError(f"{url}: the answer is not a chat completion stream "
                                   f"({self._excerpt(other.strip(), 200)!r})")
        return [(self._scrub(text), reason)], usage, served

    # --- generation -----------------------------------------------------------------------------------------
    def _generations(self, text: str, params: GenerationParams, cancel, on_text=None) -> list[Generation]:
        """params.n completions of one prompt: one request asking for n; servers that return fewer choices
        (many ignore `n`) get one more request per missing sample, each with its own seed."""
        messages = self.messages_of(text)
        stream = on_text is not None
        choices, usage, served, seconds = self._send(self._body(messages, params, 1 if stream else params.n,
                                                                params.seed, stream), cancel, on_text)
        timed = [(c, usage, seconds, len(choices)) for c in choices[: params.n]]
        while len(timed) < params.n:
            if cancel is not None and cancel.is_set():  # stopped: the samples not asked for stay empty
                timed.append((("", "cancelled"), None, 0.0, 1))
                continue
            extra, usage2, served2, seconds2 = self._send(
                self._body(messages, params, 1, params.seed + len(timed), False), cancel)
            timed += [(c, usage2, seconds2, len(extra)) for c in extra[:1]]
            served = served or served2
        if served:
            self.revision = f"{served}@{self.endpoint.location}"
        prompt_count = None
        out = []
        for index, ((raw, reason), use, secs, shared) in enumerate(timed):
            body, finish = _finish_reason(reason, raw, params.stop)
            if use and use.get("completion_tokens") is not None and shared == 1 and body == raw:
                prompt_tokens, completion, source = int(use.get("prompt_tokens") or 0), int(use["completion_tokens"]), "server"
            else:  # no usage, usage summed over n choices, or text cut here at a stop string
                if prompt_count is None:
                    prompt_count = (int(use["prompt_tokens"]), "server") if use and use.get("prompt_tokens") else \
                        self._count(text)
                prompt_tokens = prompt_count[0]
                completion, source = self._count(body, prompt=False)
            out.append(Generation(text=body, prompt_tokens=prompt_tokens, completion_tokens=completion,
                                  latency_ms=secs * 1000, finish_reason=finish, sample_index=index,
                                  token_source=source))
        return out

    def generate(self, texts: list[str], params: GenerationParams, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None,
                 on_partial: Callable[[list[str]], None] | None = None) -> list[list[Generation]]:
        """Every prompt as its own request, up to the endpoint's max_concurrency in flight on each of its replicas.

        on_partial(texts) gets the text so far of each prompt's first sample as tokens stream in.
        """
        results: list[list[Generation] | None] = [None] * len(texts)
        partial = [""] * len(texts)
        done = [0]
        lock = threading.Lock()
        abort = threading.Event()  # set when one request fails: the others stop instead of running on
        stop = _EitherSet(abort, cancel)
        errors: list[BaseException] = []

        def one(i: int) -> None:
            def on_text(so_far: str) -> None:
                with lock:
                    partial[i] = _finish_reason(None, so_far, params.stop)[0]
                    snapshot = list(partial)
                on_partial(snapshot)

            try:
                results[i] = self._generations(texts[i], params, stop, on_text if on_partial else None)
            except BaseException as exc:
                errors.append(exc)
                abort.set()
                return
            with lock:
                done[0] += 1
                if progress:
                    progress(done[0] / len(texts), f"{self.model}: {done[0]}/{len(texts)} answers")

        workers = max(1, min(self.endpoint.max_concurrency * len(self.endpoint.replicas), len(texts)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remote") as pool:
            list(pool.map(one, range(len(texts))))
        real = [e for e in errors if not isinstance(e, CancelledError)]
        if real:  # the first real failure
            raise self._clean(real[0])
        if errors and not (cancel is not None and cancel.is_set()):
            raise self._clean(errors[0])
        # Stopped by the user: answers that finished are kept; prompts never sent come back empty, "cancelled".
        return [r if r is not None else [Generation("", 0, 0, 0.0, "cancelled", s, "estimate") for s in range(params.n)]
                for r in results]

    def stream(self, text: str, params: GenerationParams, *,
               cancel: threading.Event | None = None) -> Iterator[StreamEvent]:
        """One completion of one prompt, yielding the text so far as it arrives."""
        import queue

        events: queue.Queue = queue.Queue()
        one = GenerationParams(**{**params.to_dict(), "n": 1})

        def work():
            try:
                gens = self._generations(text, one, cancel, lambda so_far: events.put(
                    _finish_reason(None, so_far, params.stop)[0]))
                events.put(gens[0])
            except BaseException as exc:
                events.put(exc)

        threading.Thread(target=work, daemon=True, name="remote-stream").start()
        while True:
            item = events.get()
            if isinstance(item, BaseException):
                raise self._clean(item)
            if isinstance(item, Generation):
                yield StreamEvent(item.text, item)
                return
            yield StreamEvent(item)

    def score_choices(self, texts, choices, *, cancel=None):
        raise RemoteModelError(f"'{self.spec}' is a remote model: label probabilities need the model's own "
                               "forward pass; evaluate remote models with method 'generate'")
