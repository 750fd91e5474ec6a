"""The consumers a queue dispatches to, grouped by priority, highest first.

Strategy: one `PriorityGroup` per consumer priority in use, kept sorted; within a group the queue's
dispatch loop serves members round-robin from the group's `next` cursor, which is kept pointing at the
same member when an earlier one leaves. Consumers are compared by identity (a channel's consumer objects
do not define equality).
"""

from __future__ import annotations

from ottermq.broker.consumer import Consumer


class PriorityGroup:
    """Consumers of one priority, served round-robin from `next`."""

    __slots__ = ("members", "next", "priority")

    def __init__(self, priority: int) -> None:
        self.priority = priority
        self.members: list[Consumer] = []
        self.next = 0


class ConsumerGroups:
    """The consumers that receive from one queue (on a single-active-consumer queue, the active one)."""

    __slots__ = ("count", "groups")

    def __init__(self) -> None:
        # Highest priority first; the dispatch loop walks this very list (it is never replaced).
        self.groups: list[PriorityGroup] = []
        self.count = 0

    def add(self, consumer: Consumer) -> None:
        """A consumer joins its priority's group, served after the members already there."""
        priority = consumer.priority
        groups = self.groups
        index = 0
        while index < len(groups) and groups[index].priority > priority:
            index += 1
        if index == len(groups) or groups[index].priority != priority:
            groups.insert(index, PriorityGroup(priority))
        groups[index].members.append(consumer)
        self.count += 1

    def remove(self, consumer: Consumer) -> bool:
        """A consumer leaves (False when it is not here)."""
        for gi, group in enumerate(self.groups):
            for index, member in enumerate(group.members):
                if member is consumer:
                    del group.members[index]
                    if index < group.next:
                        group.next -= 1
                    if not group.members:
                        del self.groups[gi]
                    self.count -= 1
                    return True
        return False

    def first(self) -> Consumer | None:
        """The first consumer of the highest priority, or None."""
        return self.groups[0].members[0] if self.groups else None

    def members(self) -> list[Consumer]:
        """Every consumer, highest priority first."""
        return [member for group in self.groups for member in group.members]

    def clear(self) -> None:
        """Forget every consumer."""
        self.groups.clear()
        self.count = 0
