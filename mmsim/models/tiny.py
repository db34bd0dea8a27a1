"""Random-weight LLaVA-style VLMs built from a config, offline.

* :func:`build_tiny_llava` saves a ~150k-parameter LLaVA (tiny CLIP vision tower, tiny
  Llama text model, a byte-level BPE tokenizer trained on the spot, ``CLIPImageProcessor``,
  ``LlavaProcessor`` and a small chat template) to a directory in a few seconds. It loads
  with ``from_pretrained`` and serves with ``transformers serve DIR --device cpu``: a real
  multimodal model on the real code paths, whose text is gibberish. Use it to test HTTP,
  batching, concurrency and throughput, never accuracy.
* :func:`real_size_llava_config` is the config of a real-size model (CLIP ViT-L/14-336 +
  a 1.5B Llama-style text model) for GPU throughput benchmarks with random weights.

Command line: ``python -m mmsim.models.tiny OUT_DIR`` writes the tiny model to ``OUT_DIR``.

Needs the ``hf`` extra (torch, transformers, tokenizers).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from mmsim.errors import UserError

HF_EXTRA_HINT = "pip install 'mmsim[hf]'"

#: Emits ``<image>`` for ``image``/``image_url`` parts; ChatML-style turns.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ['image', 'image_url'] %}{{ '<image>\n' }}"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "What is the value of x in the figure? Answer with the letter of the correct option.",
    "The answer is A. The answer is B. The answer is C. The answer is D. Answer: 42",
    "Your answer is incorrect. Please answer again. Look at the chart and count the bars.",
    "How many circles are in the image? End your reply with 'Answer: <number>'.",
    "Let me think step by step about the triangle, the angle and the length of the side.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 30 45 60 90 100 180 360",
]


def require_hf() -> tuple[Any, Any]:
    """Import torch and transformers, or raise a :class:`UserError` naming the extra."""
    try:  # through importlib: typed as Any whether or not the extra is installed
        torch = importlib.import_module("torch")
        transformers = importlib.import_module("transformers")
    except ImportError as exc:
        raise UserError(f"the hf backend needs: {HF_EXTRA_HINT} ({exc.name} is missing)") from None
    return torch, transformers


def _train_tokenizer(vocab_size: int) -> Any:
    tk: Any = importlib.import_module("tokenizers")
    pre_tokenizers = tk.pre_tokenizers
    tok = tk.Tokenizer(tk.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok


def tiny_llava_config(vocab_size: int, image_token_id: int, pad_token_id: int) -> Any:
    """The config of the tiny LLaVA (56 px images, 16 image tokens, 2+2 layers)."""
    _, tf = require_hf()
    vision = tf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, image_size=56, patch_size=14,
                                 projection_dim=32)
    text = tf.LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                          max_position_embeddings=2048, pad_token_id=pad_token_id,
                          bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    return tf.LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                          image_token_index=image_token_id, projector_hidden_act="gelu",
                          vision_feature_select_strategy="default",
                          vision_feature_layer=-2, pad_token_id=pad_token_id)


def real_size_llava_config(vocab_size: int = 32064, image_token_id: int = 32000) -> Any:
    """A real-size LLaVA config: CLIP ViT-L/14-336 (576 image tokens) + a Llama-style 1.5B
    text model (hidden 2048, 24 layers, GQA 16/4 heads, MLP 8192). ~1.9B parameters in all."""
    _, tf = require_hf()
    vision = tf.CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                                 num_attention_heads=16, image_size=336, patch_size=14,
                                 projection_dim=768)
    text = tf.LlamaConfig(vocab_size=vocab_size, hidden_size=2048, intermediate_size=8192,
                          num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=4,
                          max_position_embeddings=4096, pad_token_id=0, bos_token_id=1,
                          eos_token_id=2, tie_word_embeddings=False)
    return tf.LlavaConfig(vision_config=vision, text_config=text, image_token_id=image_token_id,
                          image_token_index=image_token_id, projector_hidden_act="gelu",
                          vision_feature_select_strategy="default", vision_feature_layer=-2,
                          pad_token_id=0)


def build_processor(vocab_size: int = 1024, image_size: int = 56) -> Any:
    """A LlavaProcessor: trained byte-level BPE tokenizer, CLIP image processor, template."""
    _, tf = require_hf()
    raw = _train_tokenizer(vocab_size)
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", extra_special_tokens={"image_token": "<image>"},
        padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    image_processor = tf.CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        do_center_crop=True, do_resize=True, do_normalize=True)
    return tf.LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                             patch_size=14, vision_feature_select_strategy="default",
                             num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
                             image_token="<image>")


def build_tiny_llava(out_dir: str | Path, *, seed: int = 0, max_new_tokens: int = 16) -> Path:
    """Build the tiny random-weight LLaVA and save model + processor to ``out_dir``.

    ``max_new_tokens`` is written to the generation config: servers that take their
    default from it (``transformers serve``) stop there instead of at the context size.
    Deterministic for a given ``seed``.
    """
    torch, tf = require_hf()
    out = Path(out_dir)
    processor = build_processor()
    tok = processor.tokenizer
    image_id = tok.convert_tokens_to_ids("<image>")
    cfg = tiny_llava_config(len(tok), image_id, tok.pad_token_id)
    torch.manual_seed(seed)
    model = tf.LlavaForConditionalGeneration(cfg).eval()
    model.generation_config = tf.GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m mmsim.models.tiny OUT_DIR", file=sys.stderr)
        return 2
    try:
        path = build_tiny_llava(args[0])
    except UserError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
