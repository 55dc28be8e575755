import asyncio

import pytest

from core.deadline import Deadline, DeadlineExceeded
from core.singleflight import SingleFlight


async def test_identical_concurrent_calls_run_once():
    flight, calls = SingleFlight(), []

    async def work():
        calls.append(1)
        await asyncio.sleep(0.05)
        return {"v": 1}

    results = await asyncio.gather(*(flight.run("k", work) for _ in range(10)))
    assert calls == [1] and all(r == {"v": 1} for r in results)
    assert flight.shared == 9 and len(flight) == 0


async def test_failure_reaches_every_caller_and_is_not_cached():
    flight = SingleFlight()

    async def boom():
        await asyncio.sleep(0.01)
        raise ValueError("no")

    results = await asyncio.gather(*(flight.run("k", boom) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)

    async def ok():
        return 2

    assert await flight.run("k", ok) == 2  # a new call after the failure runs again


async def test_a_caller_past_its_deadline_does_not_cancel_the_work_for_others():
    flight = SingleFlight()

    async def slow():
        await asyncio.sleep(0.2)
        return "done"

    impatient = asyncio.ensure_future(flight.run("k", slow, Deadline(0.05)))
    patient = asyncio.ensure_future(flight.run("k", slow, Deadline(2)))
    with pytest.raises(DeadlineExceeded):
        await impatient
    assert await patient == "done"
