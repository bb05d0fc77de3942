"""For the tools tests: run a command that prints JSON and report, as TAP test 1,
whether its output parses; on failure, the later tests are reported as not ok."""
import json
import subprocess


def run_json(cmd, later, timeout):
    """Runs cmd; returns (parsed output, return code), or (None, code) after
    printing "not ok" for test 1 and for each (number, name) in later."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        out = json.loads(r.stdout)
    except ValueError:
        print("not ok 1 - the output parses as JSON (status %d)\n# %s" % (r.returncode, r.stderr.strip()))
        for number, name in later:
            print("not ok %d - %s # no output" % (number, name))
        return None, r.returncode
    print("ok 1 - the output parses as JSON")
    return out, r.returncode
