"""The OpenAI-compatible backend: against llama-cpp-python's real server with the packaged
SmolLM2 GGUF (slow), and against a scripted server for the protocol's failure modes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from selfcorrect import api
from selfcorrect.backends.base import Conversation
from selfcorrect.backends.openai import OpenAIBackend, ServedSettings, resolve_served
from selfcorrect.errors import SelfCorrectError
from selfcorrect.registry import resolve
from selfcorrect.store import Store

MODEL = "smollm2-135m-instruct"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server():
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1, serving the packaged GGUF."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve(MODEL).path),
         "--model_alias", MODEL, "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "4096", "--n_threads", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                pytest.fail("llama-cpp-python's server exited at start")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(30)


def _answers(directory, model, readout):
    store = Store(directory)
    out = store.outcomes()
    store.close()
    out = out[(out.model == model) & (out.readout == readout)]
    return out.set_index("uid")


@pytest.mark.slow
def test_served_model_agrees_with_in_process_llamacpp(llama_server, tmp_path):
    """Both readouts through the server: the same answers as the in-process llama.cpp backend
    on the same items; the misaligned echo of llama-cpp-python is detected, not trusted."""
    common = dict(limit=12, conditions="baseline", readout="logprob,generate", out=tmp_path,
                  permute="none",
                  bootstrap=0, progress=False)  # fmt: skip
    res = api.run(f"openai:{MODEL}", base_url=llama_server, concurrency=4, **common)
    api.run(MODEL, backend="llamacpp", **common)
    info = res.manifest["models"][f"openai:{MODEL}"]["backend"]
    assert info["logprob_mode"] == "top-logprobs"
    assert "shifted" in info["logprob_detection"]
    for readout in ("logprob", "generate"):
        served = _answers(tmp_path, f"openai:{MODEL}", readout)
        local = _answers(tmp_path, f"{MODEL}@llamacpp", readout)
        assert len(served) == 12 and served.pred.notna().all()
        agree = (served.pred == local.loc[served.index, "pred"]).mean()
        assert agree >= 11 / 12, (readout, agree)


# a scripted server --------------------------------------------------------------------------
class Scripted:
    """What the fake server does: 'ok' (aligned echo, like vLLM), 'garbage', 'unauthorized',
    'slow', or 'fail-after:N' (HTTP 500 once N completions were answered)."""

    def __init__(self, tok):
        self.tok = tok
        self.mode = "ok"
        self.completions = 0
        self.lock = threading.Lock()

    def completion(self, body: dict) -> dict:
        prompt = body["prompt"]
        ids = self.tok(prompt, add_special_tokens=False)["input_ids"]
        pieces = [self.tok.decode([i]) for i in ids]
        offsets, pos = [], 0
        for p in pieces:
            offsets.append(pos)
            pos += len(p)
        lp = None
        if body.get("echo") and body.get("logprobs") is not None:
            toks = [*pieces, "X"]
            lp = {
                "tokens": toks,
                "text_offset": [*offsets, len(prompt)],
                "token_logprobs": [None] + [-1.0] * (len(toks) - 1),
                "top_logprobs": [None] + [{t: -1.0 if t != "X" else -0.1} for t in toks[1:]],
            }
        elif body.get("logprobs") is not None:
            lp = {"tokens": ["X"], "text_offset": [len(prompt)], "token_logprobs": [-0.1],
                  "top_logprobs": [{"X": -0.1}]}  # fmt: skip
        text = (prompt if body.get("echo") else "") + " (b) because"
        return {
            "id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"],
            "choices": [{"text": text, "index": 0, "logprobs": lp, "finish_reason": "length"}],
        }  # fmt: skip


def _handler(script: Scripted):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code: int, payload: bytes, kind="application/json"):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self):
            if script.mode == "unauthorized":
                return self._send(401, b'{"error": {"message": "bad key"}}')
            self._send(200, json.dumps({"object": "list", "data": [
                {"id": "served-smol", "object": "model", "owned_by": "me"}]}).encode())  # fmt: skip

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            mode = script.mode
            if mode == "slow":
                time.sleep(2)
            if mode == "garbage":
                return self._send(200, b'{"choices": "not a list", "id": 3}')
            if mode.startswith("fail-after:"):
                with script.lock:
                    if script.completions >= int(mode.split(":")[1]) and not body.get("echo"):
                        return self._send(500, b'{"error": {"message": "boom"}}')
            with script.lock:
                if not (body.get("max_tokens") == 1 and "Italy" in body["prompt"]):
                    script.completions += 1  # the probe does not count
            self._send(200, json.dumps(script.completion(body)).encode())

    return Handler


@pytest.fixture()
def fake(smollm2_tok):
    script = Scripted(smollm2_tok)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield script
    server.shutdown()


@pytest.fixture(scope="module")
def smollm2_tok():
    from selfcorrect.backends.openai import _load_tokenizer

    return _load_tokenizer(MODEL)


def _backend(url, **kw):
    settings = ServedSettings(url, tokenizer=MODEL, max_retries=0, **kw)
    return OpenAIBackend(resolve_served("openai:served-smol", settings), settings)


def test_aligned_echo_is_used_and_summed_over_the_option_tokens(fake):
    backend = _backend(fake.url)
    assert backend.logprob_mode == "echo" and "aligned" in backend.info["logprob_detection"]
    prompt = backend.render(Conversation((("user", "Pick one."),), "The answer is"))
    (res,) = backend.score([prompt], [[" (a)", " (b)", " (c)"]])
    # every token after the prompt is worth -1.0 on this server: the sums count the tokens
    assert res.logprobs == tuple(-float(n) for n in res.n_tokens)
    assert all(n >= 2 for n in res.n_tokens)
    assert backend.generate([prompt], 5) == [" (b) because"]


def test_failures_are_one_line_errors_naming_the_request(fake):
    fake.mode = "unauthorized"
    with pytest.raises(SelfCorrectError, match="authentication failed.*SELFCORRECT_API_KEY"):
        _backend(fake.url)
    fake.mode = "ok"
    backend = _backend(fake.url)
    fake.mode = "garbage"
    with pytest.raises(SelfCorrectError, match=r"request sha256 \w+ .*malformed response"):
        backend.generate(["Question?"], 4)
    fake.mode = "slow"
    slow = _backend(fake.url.replace("/v1", "/v1"), timeout_s=0.5)
    with pytest.raises(SelfCorrectError, match="timed out"):
        slow.generate(["Question?"], 4)
    with pytest.raises(SelfCorrectError, match="does not serve 'nope'"):
        settings = ServedSettings(fake.url, tokenizer=MODEL, max_retries=0)
        fake.mode = "ok"
        OpenAIBackend(resolve_served("openai:nope", settings), settings)
    port = _free_port()
    with pytest.raises(SelfCorrectError, match="cannot reach the server"):
        _backend(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(SelfCorrectError, match="needs --base-url"):
        resolve_served("openai:x", ServedSettings(""))


def test_interrupted_run_resumes_without_repeating_finished_requests(fake, tmp_path):
    """A server that starts failing mid-run: the run stops with an error, the finished
    batches are kept; the rerun asks only for the items still missing."""
    common = dict(limit=16, conditions="baseline", readout="generate", out=tmp_path, bootstrap=0,
                  permute="none",
                  progress=False, base_url=fake.url, tokenizer=MODEL, concurrency=1)  # fmt: skip
    fake.mode = "fail-after:6"
    with pytest.raises(SelfCorrectError, match="HTTP 500"):
        api.run("openai:served-smol", **common)
    done = len(_answers(tmp_path, "openai:served-smol", "generate"))
    assert done == 4  # one batch of 4 (concurrency 1 x 4) finished before the failure
    fake.mode, fake.completions = "ok", 0
    api.run("openai:served-smol", **common)
    assert fake.completions == 16 - done
    assert len(_answers(tmp_path, "openai:served-smol", "generate")) == 16


def test_head_dtype_is_refused_for_a_served_model():
    from selfcorrect.backends.base import LoadOptions

    with pytest.raises(SelfCorrectError, match="--head-dtype applies to local models"):
        OpenAIBackend.settings(LoadOptions(base_url="http://x/v1", head_dtype="float32"))
