"""Member lists held in memory, per process: who a new message is pushed to.

A list is cached under the conversation's `members_version`, which every membership
change bumps under the conversation's row lock, and which the send statement returns
with the stored message (read under that same lock; `repository_send.py`). A send uses
the cached list only when it is at least that version, else it reads the members again:
so no process ever pushes with a list older than the message, whatever process changed
the membership, and no invalidation message is needed. Bounded: the least recently used
conversations are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict


class MemberLists:
    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._lists: OrderedDict[str, tuple[int, list[str]]] = OrderedDict()

    def get(self, conversation_id: str, members_version: int) -> list[str] | None:
        """The cached members, if cached at `members_version` or later."""
        entry = self._lists.get(conversation_id)
        if entry is None or entry[0] < members_version:
            return None
        self._lists.move_to_end(conversation_id)
        return entry[1]

    def latest(self, conversation_id: str) -> list[str] | None:
        """The cached members at whatever version (a guess, to start work early: check
        it against the version a store returns with `get`)."""
        entry = self._lists.get(conversation_id)
        return entry[1] if entry is not None else None

    def put(self, conversation_id: str, members_version: int, member_ids: list[str]) -> None:
        entry = self._lists.get(conversation_id)
        if entry is not None and entry[0] > members_version:
            return  # a concurrent reader already cached a later list
        self._lists[conversation_id] = (members_version, member_ids)
        self._lists.move_to_end(conversation_id)
        while len(self._lists) > self.capacity:
            self._lists.popitem(last=False)
