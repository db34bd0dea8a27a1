"""The screening answers a run keeps while it plays, in a compact form.

The runner needs every screened agent's answer to build the test sets, and each receiver's
screening response as the first turn of its feedback episodes. A ``Response`` object costs
about 2 KB; a run of 100,000 episodes keeps tens of thousands of them, so they are kept as
tuples of field values (~0.3 KB) and rebuilt, equal to the original, when asked for.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from mmsim.messages import Response, Usage

_FIELDS = tuple(f for f in Response.model_fields if f != "usage")
_USAGE = tuple(Usage.model_fields)
_ANSWER = _FIELDS.index("answer")
_Packed = tuple[tuple[object, ...], tuple[object, ...]]


class ScreenAnswers(MutableMapping[tuple[str, str], Response]):
    """``(agent, sample id) -> Response``, stored packed."""

    def __init__(self) -> None:
        self._d: dict[tuple[str, str], _Packed] = {}

    def __setitem__(self, key: tuple[str, str], resp: Response) -> None:
        d = resp.__dict__
        self._d[key] = (tuple(d[f] for f in _FIELDS),
                        tuple(resp.usage.__dict__[f] for f in _USAGE))

    def __getitem__(self, key: tuple[str, str]) -> Response:
        values, usage = self._d[key]
        kw: dict[str, Any] = dict(zip(_FIELDS, values, strict=True))
        # the validating constructors: faster than model_construct in pydantic 2
        kw["usage"] = Usage(**dict(zip(_USAGE, usage, strict=True)))
        return Response(**kw)

    def answer(self, key: tuple[str, str]) -> str | None:
        """The extracted answer of ``key`` (KeyError when not screened), without
        rebuilding the Response."""
        return self._d[key][0][_ANSWER]  # type: ignore[return-value]

    def __delitem__(self, key: tuple[str, str]) -> None:
        del self._d[key]

    def __contains__(self, key: object) -> bool:
        return key in self._d

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)
