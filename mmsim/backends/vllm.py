"""``vllm``: an in-process vLLM engine (``AsyncLLM``), continuous batching included.

The engine runs in this process and batches every concurrent ``generate`` call itself, so
the backend just submits each request. Prompts are rendered with the model's own chat
template (its Hugging Face processor); images are passed as PIL images in
``multi_modal_data``. For a separate server (``vllm serve``) use the ``openai`` backend and
a ``servers:`` entry instead: that path needs no vLLM in the mmsim process.

Params: ``model`` (required) and ``max_new_tokens`` (default 256), ``temperature``
(default 0), ``seed``; every other key is passed to ``vllm.AsyncEngineArgs`` (e.g.
``gpu_memory_utilization``, ``max_model_len``, ``tensor_parallel_size``,
``limit_mm_per_prompt``, ``dtype``).

Needs vLLM (``pip install 'mmsim[vllm]'``, Linux + CUDA); the import happens when the
backend is built, with a clear error when it is missing.
"""

from __future__ import annotations

import base64
import importlib
import io
import itertools
import time
from typing import Any

from mmsim.backends.base import Backend, Completion, GenerateRequest, backend
from mmsim.errors import InfrastructureError, UserError, validated
from mmsim.messages import ChatTurn, Image, Text, Usage, Video

VLLM_EXTRA_HINT = "pip install 'mmsim[vllm]'"
_OWN_PARAMS = ("model", "max_new_tokens", "temperature", "seed", "video_frames", "frame_cache_dir")


def require_vllm() -> Any:
    """Import vLLM, or raise a :class:`UserError` naming the extra to install."""
    try:
        vllm = importlib.import_module("vllm")
    except ImportError as exc:
        raise UserError(f"the vllm backend needs vLLM: {VLLM_EXTRA_HINT} (Linux with a CUDA "
                        f"GPU); import failed: {exc}") from None
    return vllm


class VLLMBackend(Backend):
    """In-process vLLM ``AsyncLLM`` engine."""

    _ids = itertools.count()

    @classmethod
    def check_params(cls, name: str, params: dict[str, Any]) -> str:
        model = params.get("model")
        if not isinstance(model, str) or not model:
            raise UserError("is required (a local directory or a hub id)",
                            field="params.model")
        from mmsim.data.video import FrameSpec

        validated(FrameSpec, dict(params.get("video_frames") or {}), label="",
                  field="params.video_frames")
        return model

    def __init__(self, name: str, params: dict[str, Any]):
        super().__init__(name, params)
        model = self.check_params(name, params)
        vllm = require_vllm()
        async_llm: Any = importlib.import_module("vllm.v1.engine.async_llm")
        self.model = model
        self.max_new_tokens = int(params.get("max_new_tokens", 256))
        self.temperature = float(params.get("temperature", 0.0))
        self.seed = params.get("seed")
        from mmsim.data.video import FrameSpec

        self.frame_spec = validated(FrameSpec, dict(params.get("video_frames") or {}),
                                    label="", field="params.video_frames")
        self.frame_cache_dir = params.get("frame_cache_dir")
        engine_kw = {k: v for k, v in params.items() if k not in _OWN_PARAMS}
        try:
            args = vllm.AsyncEngineArgs(model=model, **engine_kw)
        except TypeError as exc:
            raise UserError(f"bad engine argument: {exc}",
                            field="params") from None
        self._vllm = vllm
        self.engine: Any = async_llm.AsyncLLM.from_engine_args(args)
        tf: Any = importlib.import_module("transformers")
        self.processor: Any = tf.AutoProcessor.from_pretrained(model)

    def _render(self, turns: tuple[ChatTurn, ...]) -> tuple[str, list[Any]]:
        from PIL import Image as PILImage

        messages: list[dict[str, Any]] = []
        images: list[Any] = []
        for t in turns:
            content: list[dict[str, Any]] = []
            for p in t.parts:
                if isinstance(p, Text):
                    content.append({"type": "text", "text": p.text})
                elif isinstance(p, Image):
                    content.append({"type": "image"})
                    src: Any = p.uri.removeprefix("file://")
                    if p.uri.startswith("data:"):
                        src = io.BytesIO(base64.b64decode(p.uri.split(",", 1)[1]))
                    images.append(PILImage.open(src).convert("RGB"))
                elif isinstance(p, Video):  # as frames (the SEED-Bench-R1 recipe by default)
                    from mmsim.data.video import video_as_images

                    for frame in video_as_images(p, self.frame_spec, self.frame_cache_dir):
                        content.append({"type": "image"})
                        images.append(PILImage.open(frame.uri).convert("RGB"))
            messages.append({"role": t.role, "content": content})
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)
        return str(text), images

    async def generate(self, request: GenerateRequest) -> Completion:
        t0 = time.perf_counter()
        text, images = self._render(request.messages)
        prompt: dict[str, Any] = {"prompt": text}
        if images:
            prompt["multi_modal_data"] = {"image": images}
        temperature = self.temperature if request.temperature is None else request.temperature
        sp = self._vllm.SamplingParams(
            max_tokens=request.max_tokens or self.max_new_tokens, temperature=temperature,
            seed=request.seed if self.seed is None else self.seed)
        final: Any = None
        try:
            async for out in self.engine.generate(prompt, sp, f"{self.name}-{next(self._ids)}"):
                final = out
        except Exception as exc:  # engine errors fail this episode, not the run
            raise InfrastructureError(f"vllm engine: {type(exc).__name__}: {exc}") from exc
        if final is None or not final.outputs:
            raise InfrastructureError("vllm engine returned no output")
        o = final.outputs[0]
        return Completion(text=o.text,
                          usage=Usage(prompt_tokens=len(final.prompt_token_ids or ()),
                                      completion_tokens=len(o.token_ids)),
                          latency_s=time.perf_counter() - t0)

    def describe(self) -> dict[str, Any]:
        return {"backend": "vllm", "simulated": False, "model": self.model}

    async def aclose(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.shutdown()


@backend("vllm", cls=VLLMBackend)
def _make(name: str, params: dict[str, Any]) -> Backend:
    """In-process vLLM engine (AsyncLLM; needs mmsim[vllm] and a GPU)."""
    return VLLMBackend(name, params)
