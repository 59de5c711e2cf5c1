"""The per-ID table of entry points (runner/paths.py) from the probes'
"@SP1 paths" lines."""
from runner import paths, protocol


def test_a_paths_line_reaches_the_outcome():
    text = ("@SP1 begin probe=p test=t family=ipv4 ids=TCP-FLOW-CONTROL\n"
            "@SP1 paths in=read,io_uring:RECV out= wait=epoll_wait\n"
            "@SP1 end verdict=pass message=\n")
    out = protocol.interpret(text, 0)
    assert out.paths == {"in": ["read", "io_uring:RECV"], "wait": ["epoll_wait"]}


def test_table_joins_items_of_an_id_and_marks_entry_points():
    doc = {"environment": {"kernel": "k", "machine": "m"}, "started": "s", "results": [
        {"ids": ["TCP-FLOW-CONTROL"], "paths": {"in": ["read", "recvmmsg"]}},
        {"ids": ["TCP-FLOW-CONTROL"], "paths": {"out": ["io_uring:SEND"]}},
        {"ids": ["UDP-BOUNDARY"]}]}
    md = paths.render_md(doc)
    assert "| TCP-FLOW-CONTROL | 2 | read, **recvmmsg** | **io_uring:SEND** |  |  |" in md
    assert "| UDP-BOUNDARY | 1 |  |  |  |  |" in md
    assert "1 of 2 IDs" in md
