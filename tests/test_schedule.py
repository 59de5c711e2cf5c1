"""The order the host target hands pytest-xdist: slow items first, and
dealt out so that each worker's first run of consecutive items (xdist 3's
load scheduler) starts with its share of them, never all slow items in
the first worker's run one after another."""
from runner import plugin


class Slow:
    def __init__(self, name, slow):
        self.name, self.slow = name, slow


def deal(items, workers):
    # deal_slow reads .sp_item.slow on ProbeItems; plain stand-ins here.
    real = plugin._slow
    plugin._slow = lambda i: i.slow
    try:
        return [i.name for i in plugin.deal_slow(items, workers)]
    finally:
        plugin._slow = real


def test_each_worker_starts_its_first_run_with_a_slow_item():
    items = [Slow("s%d" % i, 1) for i in range(4)] + [Slow("q%d" % i, 0) for i in range(36)]
    order = deal(items, 4)
    run = len(items) // 4 // 4            # xdist: max(len // workers // 4, 2)
    assert sorted(order) == sorted(i.name for i in items)
    firsts = [order[k * run:(k + 1) * run] for k in range(4)]
    assert [sum(n.startswith("s") for n in f) for f in firsts] == [1, 1, 1, 1]


def test_without_workers_or_slow_items_the_order_stays():
    items = [Slow("s0", 1)] + [Slow("q%d" % i, 0) for i in range(9)]
    assert deal(items, 0) == [i.name for i in items]
    assert deal(items, 4) == [i.name for i in items]     # one slow item: nothing to deal
