"""The screening answers a run keeps while it plays, in a compact form.

The runner needs every screened agent's answer to build the test sets, and each receiver's
screening response as the first turn of its feedback episodes. A ``Response`` object costs
about 2 KB; a run of 100,000 episodes keeps tens of thousands of them. Each is kept as one
``marshal``-ed tuple of its field values (~0.2 KB with its dict entry, and not tracked by
the cyclic GC; 0.53 KB as tuples of values keyed by ``(agent, sample id)`` tuples, which
this replaced), grouped by agent, without the envelope fields that follow from the key
(the episode id, the sender, the run id shared by the run), and rebuilt, equal to the
original, when asked for.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from mmsim.messages import Response, Usage

#: Envelope fields stored only where they differ from what the key implies.
_KEYED = ("run_id", "episode_id", "sender")
_BODY = tuple(f for f in Response.model_fields if f not in ("usage", "kind", *_KEYED))
_USAGE = tuple(Usage.model_fields)
_ANSWER = _BODY.index("answer")
_N_BODY = len(_BODY)
_N_VALUES = _N_BODY + len(_USAGE)
_Packed = bytes | Response  # a Response only if a field holds what marshal cannot write


class ScreenAnswers(MutableMapping[tuple[str, str], Response]):
    """``(agent, sample id) -> Response``, stored packed.

    Args:
        episode_id: the episode id a screening response of ``(agent, sample id)`` carries
            (the runner's ``screen_id``); it is then not stored per entry.
    """

    def __init__(self, episode_id: Callable[[str, str], str] | None = None) -> None:
        self._d: dict[str, dict[str, _Packed]] = {}  # agent -> sample id -> packed
        self._episode_id = episode_id
        self._run_id: str | None = None  # the first response's; shared by a run's answers
        self._len = 0

    def __setitem__(self, key: tuple[str, str], resp: Response) -> None:
        agent, sid = key
        d = resp.__dict__
        if self._run_id is None:
            self._run_id = d["run_id"]
        eid = d["episode_id"]
        keyed = (None if d["run_id"] == self._run_id else d["run_id"],
                 None if self._episode_id is not None and eid == self._episode_id(agent, sid)
                 else eid,
                 None if d["sender"] == agent else d["sender"])
        usage = resp.usage.__dict__
        packed: _Packed
        try:
            packed = marshal.dumps((*[d[f] for f in _BODY], *[usage[f] for f in _USAGE],
                                    *keyed))
        except ValueError:  # a field type marshal cannot write: kept as it is
            packed = resp
        inner = self._d.get(agent)
        if inner is None:
            inner = self._d[agent] = {}
        if sid not in inner:
            self._len += 1
        inner[sid] = packed

    def _packed(self, key: tuple[str, str]) -> _Packed:
        try:
            return self._d[key[0]][key[1]]
        except (KeyError, IndexError, TypeError):
            raise KeyError(key) from None

    def __getitem__(self, key: tuple[str, str]) -> Response:
        packed = self._packed(key)
        if isinstance(packed, Response):
            return packed
        values: tuple[Any, ...] = marshal.loads(packed)
        kw: dict[str, Any] = dict(zip(_BODY, values[:_N_BODY], strict=True))
        # the validating constructors: faster than model_construct in pydantic 2
        kw["usage"] = Usage(**dict(zip(_USAGE, values[_N_BODY:_N_VALUES], strict=True)))
        run_id, eid, sender = values[_N_VALUES:]
        agent, sid = key
        kw["run_id"] = self._run_id if run_id is None else run_id
        if eid is None:
            assert self._episode_id is not None
            eid = self._episode_id(agent, sid)
        kw["episode_id"] = eid
        kw["sender"] = agent if sender is None else sender
        return Response(**kw)

    def answer(self, key: tuple[str, str]) -> str | None:
        """The extracted answer of ``key`` (KeyError when not screened), without
        rebuilding the Response."""
        packed = self._packed(key)
        if isinstance(packed, Response):
            return packed.answer
        return marshal.loads(packed)[_ANSWER]  # type: ignore[no-any-return]

    def __delitem__(self, key: tuple[str, str]) -> None:
        self._packed(key)
        inner = self._d[key[0]]
        del inner[key[1]]
        self._len -= 1
        if not inner:
            del self._d[key[0]]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 2:
            return False
        inner = self._d.get(key[0])
        return inner is not None and key[1] in inner

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for agent, inner in self._d.items():
            for sid in inner:
                yield agent, sid

    def __len__(self) -> int:
        return self._len
