"""``hf``: an in-process transformers VLM, batched across concurrent episodes.

Every ``generate`` call (one per episode turn, from any actor using this backend) goes to a
:class:`~mmsim.backends.batching.MicroBatcher`: calls that arrive together are rendered with
the model's chat template, padded on the left, and run as one ``model.generate`` in a worker
thread while the event loop keeps playing other episodes. A batch closes at
``max_batch_size`` requests or ``max_wait_ms`` after it starts collecting.

Works with LLaVA-style models (``AutoModelForImageTextToText`` + ``AutoProcessor``) and with
Qwen2-VL-style ones where their processor loads (it needs torchvision). Greedy decoding
(``temperature: 0``, the default) gives the same text whatever the batch; with sampling the
output depends on the batch a request lands in.

Params (``params:`` of a ``backend: hf`` agent): ``model`` (a local directory or a hub id),
``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:1``), ``dtype`` (``auto``, ``float32``,
``bfloat16``, ``float16``), ``max_batch_size``, ``max_wait_ms``, ``max_new_tokens``,
``temperature``, ``cache_implementation`` (``static`` preallocates the KV cache),
``attn_implementation``, ``ignore_eos`` (benchmarks: always generate ``max_new_tokens``),
``trust_remote_code``.

Needs the ``hf`` extra: ``pip install 'mmsim[hf]'``.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mmsim.backends.base import Backend, Completion, GenerateRequest, backend
from mmsim.backends.batching import MicroBatcher
from mmsim.errors import InfrastructureError, UserError, validated
from mmsim.messages import ChatTurn, Image, Text, Usage, Video


class HFParams(BaseModel):
    """Parameters of an ``hf`` agent."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    model: str = Field(min_length=1)
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    max_batch_size: int = Field(32, ge=1)
    max_wait_ms: float = Field(10.0, ge=0)
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0)
    cache_implementation: Literal["dynamic", "static"] = "dynamic"
    attn_implementation: str | None = None
    ignore_eos: bool = False
    trust_remote_code: bool = False
    # video parts become frames (mmsim.data.video.FrameSpec options; default the
    # SEED-Bench-R1 recipe), cached by content hash in frame_cache_dir ($MMSIM_CACHE_DIR)
    video_frames: dict[str, Any] = Field(default_factory=dict)
    frame_cache_dir: str | None = None


@dataclass(frozen=True, slots=True)
class _Item:
    request: GenerateRequest
    max_new_tokens: int
    temperature: float

    @property
    def key(self) -> tuple[int, float]:
        return self.max_new_tokens, self.temperature


@dataclass(frozen=True, slots=True)
class _Out:
    text: str
    prompt_tokens: int
    completion_tokens: int
    batch_size: int
    batch_s: float


class HFBackend(Backend):
    """In-process transformers VLM with dynamic batching across episodes."""

    @classmethod
    def check_params(cls, name: str, params: dict[str, Any], *,
                     need_model: bool = True) -> HFParams:
        if need_model and not params.get("model"):
            raise UserError("is required: a local model directory or a hub id (e.g. --set "
                            "receivers.0.params.model=/tmp/tiny-llava)", field="params.model")
        try:
            cfg = HFParams.model_validate(params)
        except ValidationError as exc:
            e = exc.errors()[0]
            field = ".".join(str(x) for x in e["loc"])
            raise UserError(str(e["msg"]), field=f"params.{field}" if field else "params") \
                from None
        from mmsim.data.video import FrameSpec

        validated(FrameSpec, cfg.video_frames, label="", field="params.video_frames")
        return cfg

    def __init__(self, name: str, params: dict[str, Any], *, model: Any = None,
                 processor: Any = None):
        super().__init__(name, params)
        if model is None and not params.get("model"):
            raise UserError("is required: a local model directory or a hub id (e.g. --set "
                            "receivers.0.params.model=/tmp/tiny-llava)", field="params.model")
        self.cfg = self.check_params(name, params, need_model=False)
        from mmsim.data.video import FrameSpec

        self._frame_spec = validated(FrameSpec, self.cfg.video_frames, label="",
                                     field="params.video_frames")
        from mmsim.models.tiny import require_hf

        self._torch, self._tf = require_hf()
        self._lock = threading.Lock()
        self._images: OrderedDict[str, Any] = OrderedDict()  # sha256 -> PIL image (LRU)
        self.generated_tokens = 0
        if model is not None and processor is not None:  # already built (benchmarks)
            self.model, self.processor = model, processor
            self.device = str(next(model.parameters()).device)
        else:
            self.model, self.processor = self._load()
        tok = self.processor.tokenizer if hasattr(self.processor, "tokenizer") \
            else self.processor
        tok.padding_side = "left"
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        self._tok = tok
        self.batcher: MicroBatcher[_Item, _Out] = MicroBatcher(
            self._run_batch, max_batch=self.cfg.max_batch_size,
            max_wait_s=self.cfg.max_wait_ms / 1000, key=lambda it: it.key)

    # -- loading -----------------------------------------------------------------------
    def _load(self) -> tuple[Any, Any]:
        torch, tf = self._torch, self._tf
        cfg = self.cfg
        looks_local = cfg.model.startswith((".", "/", "~")) or Path(cfg.model).exists()
        if looks_local and not Path(cfg.model).expanduser().is_dir():
            raise UserError(f"model directory not found: {cfg.model}",
                            field="params.model")
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("device is cuda but torch sees no GPU (a CPU build of torch, or "
                            "CUDA_VISIBLE_DEVICES empty)",
                            field="params.device")
        self.device = device
        dtype = "auto" if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
        kw: dict[str, Any] = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code}
        if cfg.attn_implementation:
            kw["attn_implementation"] = cfg.attn_implementation
        path = str(Path(cfg.model).expanduser()) if looks_local else cfg.model
        try:
            processor = tf.AutoProcessor.from_pretrained(
                path, trust_remote_code=cfg.trust_remote_code)
            model = tf.AutoModelForImageTextToText.from_pretrained(path, **kw)
        except (OSError, ValueError, ImportError) as exc:
            raise UserError(f"cannot load model {cfg.model!r}: {exc}",
                            field="params.model") from None
        return model.to(device).eval(), processor

    # -- requests ----------------------------------------------------------------------
    async def generate(self, request: GenerateRequest) -> Completion:
        t0 = time.perf_counter()
        item = _Item(request,
                     request.max_tokens or self.cfg.max_new_tokens,
                     self.cfg.temperature if request.temperature is None else request.temperature)
        out = await self.batcher.submit(item)
        return Completion(text=out.text,
                          usage=Usage(prompt_tokens=out.prompt_tokens,
                                      completion_tokens=out.completion_tokens),
                          latency_s=time.perf_counter() - t0,
                          meta={"batch_size": out.batch_size, "batch_s": out.batch_s})

    def _image(self, im: Image) -> Any:
        from PIL import Image as PILImage

        cached = self._images.get(im.sha256)
        if cached is not None:
            self._images.move_to_end(im.sha256)
            return cached
        uri = im.uri
        pil: Any
        try:
            if uri.startswith("data:"):
                data = base64.b64decode(uri.split(",", 1)[1])
                pil = PILImage.open(io.BytesIO(data))
            else:
                pil = PILImage.open(uri.removeprefix("file://"))
            pil = pil.convert("RGB")
        except (OSError, ValueError, IndexError) as exc:
            raise InfrastructureError(f"hf backend: cannot read image {uri[:200]}: {exc}") \
                from None
        self._images[im.sha256] = pil
        if len(self._images) > 256:
            self._images.popitem(last=False)
        return pil

    def _frames(self, video: Video) -> tuple[Image, ...]:
        from mmsim.data.video import video_as_images

        return video_as_images(video, self._frame_spec, self.cfg.frame_cache_dir)

    def _render(self, turns: tuple[ChatTurn, ...]) -> tuple[str, list[Any]]:
        messages: list[dict[str, Any]] = []
        images: list[Any] = []
        for t in turns:
            content: list[dict[str, Any]] = []
            for p in t.parts:
                if isinstance(p, Text):
                    content.append({"type": "text", "text": p.text})
                elif isinstance(p, Image):
                    content.append({"type": "image"})
                    images.append(self._image(p))
                elif isinstance(p, Video):
                    for frame in self._frames(p):
                        content.append({"type": "image"})
                        images.append(self._image(frame))
            messages.append({"role": t.role, "content": content})
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True,
                                                  tokenize=False)
        return str(text), images

    def _run_batch(self, items: list[_Item]) -> list[_Out | BaseException]:
        """One padded ``generate`` over ``items`` (runs in a worker thread)."""
        t0 = time.perf_counter()
        texts: list[str] = []
        images: list[Any] = []
        results: list[_Out | BaseException | None] = [None] * len(items)
        live: list[int] = []
        for i, it in enumerate(items):
            try:
                text, ims = self._render(it.request.messages)
            except InfrastructureError as exc:
                results[i] = exc
                continue
            texts.append(text)
            images.extend(ims)
            live.append(i)
        if live:
            rows: list[tuple[str, int, int] | BaseException]
            with self._lock:
                try:
                    rows = list(self._generate(texts, images, items[live[0]]))
                except Exception as exc:  # OOM, shape errors...: every request fails
                    err = InfrastructureError(f"hf backend: generate failed: "
                                              f"{type(exc).__name__}: {exc}")
                    rows = [err for _ in live]
            dt = time.perf_counter() - t0
            for i, row in zip(live, rows, strict=True):
                results[i] = row if isinstance(row, BaseException) else \
                    _Out(row[0], row[1], row[2], len(items), dt)
        return [r if r is not None else InfrastructureError("hf backend: no result")
                for r in results]

    def _generate(self, texts: list[str], images: list[Any], first: _Item
                  ) -> list[tuple[str, int, int]]:
        torch = self._torch
        enc = self.processor(text=texts, images=images or None, padding=True,
                             return_tensors="pt")
        enc = enc.to(self.model.device)
        if "pixel_values" in enc and self.model.dtype != enc["pixel_values"].dtype:
            enc["pixel_values"] = enc["pixel_values"].to(self.model.dtype)
        kw: dict[str, Any] = {"max_new_tokens": first.max_new_tokens,
                              "pad_token_id": self._tok.pad_token_id}
        if first.temperature > 0:
            kw.update(do_sample=True, temperature=first.temperature)
            torch.manual_seed(first.request.seed)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.cfg.cache_implementation == "static":
            kw["cache_implementation"] = "static"
        if self.cfg.ignore_eos:
            kw["min_new_tokens"] = first.max_new_tokens
        with torch.inference_mode():
            out = self.model.generate(**enc, **kw)
        n = enc["input_ids"].shape[1]
        new = out[:, n:].tolist()
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        eos = self.model.generation_config.eos_token_id
        stops = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if not self.cfg.ignore_eos:
            stops.add(self._tok.eos_token_id)
        rows: list[tuple[str, int, int]] = []
        for ids, plen in zip(new, prompt_lens, strict=True):
            cut = len(ids)
            if not self.cfg.ignore_eos:
                for j, t in enumerate(ids):
                    if t in stops:
                        cut = j + 1
                        break
            ids = ids[:cut]
            self.generated_tokens += len(ids)
            rows.append((self._tok.decode(ids, skip_special_tokens=True), int(plen), len(ids)))
        return rows

    def describe(self) -> dict[str, Any]:
        return {"backend": "hf", "simulated": False, "model": self.cfg.model,
                "device": self.device, "dtype": self.cfg.dtype,
                "max_batch_size": self.cfg.max_batch_size, "max_wait_ms": self.cfg.max_wait_ms,
                "cache_implementation": self.cfg.cache_implementation}

    async def aclose(self) -> None:
        model, self.model = self.model, None
        if model is not None and str(self.device).startswith("cuda"):
            del model
            self._torch.cuda.empty_cache()


@backend("hf", cls=HFBackend)
def _make(name: str, params: dict[str, Any]) -> Backend:
    """In-process transformers VLM, batched across episodes (needs mmsim[hf])."""
    return HFBackend(name, params)
