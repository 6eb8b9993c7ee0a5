"""The agent's job slots (recorder/agent/job_slots.py): the kernel judges abi.JOB_SLOTS jobs at once."""

from __future__ import annotations

import pytest

from cicd_audit.recorder.agent.job_slots import JobSlots
from cicd_audit.recorder.kernel import abi


def test_every_slot_once_then_none():
    slots = JobSlots()
    taken = [slots.take() for _ in range(abi.JOB_SLOTS)]
    assert sorted(taken) == list(range(abi.JOB_SLOTS))
    assert slots.take() is None and slots.free == 0


def test_a_slot_given_back_is_the_last_to_be_taken_again():
    slots = JobSlots(3)
    first = slots.take()
    slots.give(first)
    assert [slots.take(), slots.take(), slots.take()] == [1, 2, first]


def test_giving_a_free_slot_back_is_a_bug():
    with pytest.raises(ValueError, match="free already"):
        JobSlots(2).give(0)
