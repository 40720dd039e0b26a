"""lines_connector: one run per new line appended to a text file (a simple queue)."""

import os

from arcoflow.sdk import ConnectorError, PollContext, PollResult, RunRequest, hookimpl

CURSOR_VERSION = 1  # the cursor is "<inode>:<bytes consumed>"


@hookimpl
def arcoflow_poll(context: PollContext) -> PollResult:
    path = context.sensor.config["path"]
    if context.cursor_version not in (None, CURSOR_VERSION):
        raise ConnectorError(f"unknown cursor version {context.cursor_version}")
    try:
        inode = os.stat(path).st_ino
    except FileNotFoundError:
        return PollResult(skip_reason=f"{path} does not exist yet")
    seen_inode, _, seen = str(context.cursor or "0:0").partition(":")
    offset = int(seen) if int(seen_inode) == inode else 0  # a new file: from its start
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(1 << 20)
    data = data[: data.rfind(b"\n") + 1]  # whole lines only; a partial one waits
    requests = []
    for line in data.splitlines(keepends=True):
        if line.strip():
            text = line.decode().strip()
            requests.append(RunRequest(f"{inode}:{offset}", config={"line": text}))
        offset += len(line)
    return PollResult(requests, cursor=f"{inode}:{offset}", cursor_version=CURSOR_VERSION)
