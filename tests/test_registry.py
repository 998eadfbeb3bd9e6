"""registry.resolve on a local model directory: what its hashes cover."""

from __future__ import annotations

import json

from selfcorrect.registry import resolve


def _model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ a }}"}))
    (d / "README.md").write_text("about")
    return d


def test_a_directory_hashes_its_weights_and_apart_its_config_tokenizer_and_template(tmp_path):
    d = _model_dir(tmp_path)
    first = resolve(str(d))
    assert first.source == "hf-dir"
    (d / "README.md").write_text("edited")  # documentation changes no answer
    assert resolve(str(d)).meta == first.meta
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ b }}"}))
    edited = resolve(str(d))
    assert edited.sha256 == first.sha256  # same weights ...
    assert edited.meta["config_sha256"] != first.meta["config_sha256"]  # ... other template
    (d / "chat_template.jinja").write_text("{{ c }}")
    assert resolve(str(d)).meta["config_sha256"] != edited.meta["config_sha256"]
