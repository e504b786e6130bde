#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (crates/engine/fuzz/seeds/<target>/): one small,
valid input for each, so that mutation starts from files the parsers accept.

Needs the PyPI packages gguf, safetensors, numpy and tokenizers (the PEFT reference setup
in scripts/reference/peft_lora_bench.py installs them). Run from anywhere:
    /usr/bin/python3 crates/engine/fuzz/make_seeds.py
The seeds are committed; run again only to change them.
"""
import io
import json
import pathlib
import zipfile

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
REPO = HERE.parents[2]

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
TOOLS = (
    "{%- if tools %}{{- '<tools>' }}{%- for tool in tools %}{{- tool | tojson }}{%- endfor %}"
    "{%- endif %}{%- for m in messages %}{%- if m.role == 'system' and loop.first %}"
    "{{- m.content | trim }}{%- elif m.role == 'user' %}{{- '[INST] ' + m.content + ' [/INST]' }}"
    "{%- else %}{{- m.content + eos_token }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '' }}{%- endif %}"
)

# a byte-level BPE vocabulary of 16 entries
TOKENS = ["<|im_start|>", "<|im_end|>"] + list("abcdeghilmnorst")[:14]
MERGES = ["a b", "c d"]


def tiny_gguf() -> bytes:
    import gguf

    SEEDS.mkdir(parents=True, exist_ok=True)
    path = SEEDS / "tmp.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(32)
    w.add_embedding_length(8)
    w.add_feed_forward_length(16)
    w.add_block_count(1)
    w.add_head_count(2)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_tokenizer_model("gpt2")
    w.add_token_list(TOKENS)
    w.add_token_types([3, 3] + [1] * (len(TOKENS) - 2))
    w.add_token_merges(MERGES)
    w.add_bos_token_id(0)
    w.add_eos_token_id(1)
    w.add_chat_template(CHATML)
    rng = np.random.default_rng(0)
    v, h, f, kv = len(TOKENS), 8, 16, 4

    def t(name, *shape):
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32))

    t("token_embd.weight", v, h)
    t("output_norm.weight", h)
    t("blk.0.attn_norm.weight", h)
    t("blk.0.attn_q.weight", h, h)
    t("blk.0.attn_k.weight", kv, h)
    t("blk.0.attn_v.weight", kv, h)
    t("blk.0.attn_output.weight", h, h)
    t("blk.0.ffn_norm.weight", h)
    t("blk.0.ffn_gate.weight", f, h)
    t("blk.0.ffn_up.weight", f, h)
    t("blk.0.ffn_down.weight", h, f)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    data = path.read_bytes()
    path.unlink()
    return data


def tiny_safetensors() -> bytes:
    from safetensors.numpy import save

    rng = np.random.default_rng(1)
    h, f, v, kv = 8, 16, 16, 4
    names = {
        "model.embed_tokens.weight": (v, h),
        "model.norm.weight": (h,),
        "model.layers.0.input_layernorm.weight": (h,),
        "model.layers.0.post_attention_layernorm.weight": (h,),
        "model.layers.0.self_attn.q_proj.weight": (h, h),
        "model.layers.0.self_attn.k_proj.weight": (kv, h),
        "model.layers.0.self_attn.v_proj.weight": (kv, h),
        "model.layers.0.self_attn.o_proj.weight": (h, h),
        "model.layers.0.mlp.gate_proj.weight": (f, h),
        "model.layers.0.mlp.up_proj.weight": (f, h),
        "model.layers.0.mlp.down_proj.weight": (h, f),
    }
    return save({n: rng.standard_normal(s).astype(np.float32) for n, s in names.items()})


def tokenizer_json() -> bytes:
    vocab = {t: i for i, t in enumerate(TOKENS)}
    doc = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": 0, "content": "<|im_start|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True},
            {"id": 1, "content": "<|im_end|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True},
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                  "merges": MERGES},
    }
    return json.dumps(doc).encode()


def docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml",
                   '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                   '<Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        z.writestr("_rels/.rels",
                   '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
                   '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>')
        z.writestr("word/document.xml",
                   '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                   '<w:body><w:p><w:r><w:t>Call me Ishmael.</w:t></w:r></w:p>'
                   '<w:tbl><w:tr><w:tc><w:p><w:r><w:t>A cell.</w:t></w:r></w:p></w:tc></w:tr></w:tbl>'
                   '</w:body></w:document>')
    return out.getvalue()


def pdf() -> bytes:
    stream = b"BT /F1 12 Tf 72 712 Td (Call me Ishmael.) Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for o in offsets:
        out += b"%010d 00000 n \n" % o
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def main():
    gguf_bytes = tiny_gguf()
    seeds = {
        "gguf_header": {"tiny-llama": gguf_bytes},
        "gguf_model": {"tiny-llama": gguf_bytes},
        "safetensors_dir": {"tiny-llama": tiny_safetensors()},
        "safetensors_index": {
            "index": json.dumps({"metadata": {"total_size": 0}, "weight_map": {
                "model.embed_tokens.weight": "model-00001-of-00001.safetensors"}}).encode(),
        },
        "tokenizer_json": {"bpe": tokenizer_json()},
        "chat_template": {"chatml": CHATML.encode(), "llama3": LLAMA3.encode(),
                          "tools": TOOLS.encode()},
        "peft_config": {
            "tiny-llama-lora": (REPO / "crates/engine/tests/fixtures/tiny-llama-lora/adapter_config.json").read_bytes(),
        },
        "extract_html": {"page": b"<html><head><title>T</title></head><body><h1>Chapter 1</h1>"
                                 b"<p>Call me <em>Ishmael</em>.</p><ul><li>one</li></ul>"
                                 b"<table><tr><td>cell</td></tr></table></body></html>"},
        "extract_pdf": {"page": pdf()},
        "extract_docx": {"page": docx()},
    }
    for target, files in seeds.items():
        d = SEEDS / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            assert len(data) < 100_000, (target, name, len(data))
            (d / name).write_bytes(data)
        print(f"{target}: {', '.join(f'{n} ({len(b)} B)' for n, b in files.items())}")


if __name__ == "__main__":
    main()
