# -*- coding: utf-8 -*-
"""
pushguide: runs a host's release steps in ONE salt job (pushguide steps protocol v1).

This execution module is part of pushguide, a release tool driving salt-api. ``pushguide
install-module`` writes it into the master's file_roots as ``_modules/pushguide.py``; minions load
it with ``saltutil.sync_modules``. It can also be installed by hand: copy this file to
``<file_roots>/_modules/pushguide.py`` and run ``salt '*' saltutil.sync_modules``.

Functions:

- ``pushguide.steps(plans, hosts)``: runs this minion's plan (a list of steps, each an
  execution-module call with an optional check, condition and retry) in order and stops after the
  first failing step. It never raises and never sets a failing job retcode: the outcome of every
  step is in the return value.
- ``pushguide.version()``: ``{"pushguide": 1}``, the protocol version.
- ``pushguide.free_space(path, needed)``: whether the filesystem holding ``path`` has ``needed``
  bytes free.
- ``pushguide.prune(releases_dir, keep, protect=[])``: removes old release directories.

The module never starts a shell and never evaluates strings: steps name execution-module functions,
which are called through ``__salt__`` with JSON arguments. Python 3.8+ standard library only.
"""

import json
import os
import shutil
import time

from salt.exceptions import CommandExecutionError

__virtualname__ = "pushguide"

#: The protocol version this module speaks.
PROTOCOL = 1

#: Longest error text in a step's result.
_ERROR_MAX = 500

#: Longest release directory name ``prune`` considers (bytes).
_VERSION_MAX = 128

_CHECK_WORDS = ("succeeds", "true", "nonempty")

_VERSION_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-"
)
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_DIGITS = frozenset("0123456789")
_U64_MAX = 2**64 - 1
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def __virtual__():
    return __virtualname__


# ---------------------------------------------------------------------------------------- helpers


class _Malformed(Exception):
    """The job's input does not have the protocol's shape."""


def _cut(text):
    text = str(text)
    return text[:_ERROR_MAX]


def _to_json(value):
    """``value`` as compact JSON text (for error messages); never fails."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return repr(value)


def _plain(value):
    """``value`` reduced to JSON types, so the job's return always serializes."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError, RecursionError):
        return str(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _my_id():
    try:
        return str(__opts__["id"])
    except Exception:  # pylint: disable=broad-except
        return ""


# ---------------------------------------------------------------------------------- input checks


def _check_call(where, obj):
    """``(fun, arg, kwarg)`` of a step or condition object."""
    if not isinstance(obj, dict):
        raise _Malformed("{} is not an object".format(where))
    fun = obj.get("fun")
    if not isinstance(fun, str) or not fun:
        raise _Malformed("{}: `fun` is not a string".format(where))
    arg = obj.get("arg")
    if arg is None:
        arg = []
    if not isinstance(arg, (list, tuple)):
        raise _Malformed("{}: `arg` is not a list".format(where))
    kwarg = obj.get("kwarg")
    if kwarg is None:
        kwarg = {}
    if not isinstance(kwarg, dict) or not all(isinstance(k, str) for k in kwarg):
        raise _Malformed("{}: `kwarg` is not an object".format(where))
    return fun, list(arg), dict(kwarg)


def _check_check(where, check):
    """The step's check: one of the words, ``("equals", text)`` or ``("http", status, body)``."""
    if check is None:
        return ("succeeds",)
    if isinstance(check, str):
        if check in _CHECK_WORDS:
            return (check,)
        raise _Malformed(
            "{}: unknown check {} (succeeds, true, nonempty, equals, http)".format(
                where, _to_json(check)
            )
        )
    if isinstance(check, dict) and len(check) == 1:
        if "equals" in check:
            text = check["equals"]
            if not isinstance(text, str):
                raise _Malformed("{}: `equals` is not a string".format(where))
            return ("equals", text)
        if "http" in check:
            http = check["http"]
            if not isinstance(http, dict) or not _is_int(http.get("status")):
                raise _Malformed("{}: `http` needs an integer `status`".format(where))
            body = http.get("body")
            if body is not None and not isinstance(body, str):
                raise _Malformed("{}: `http.body` is not a string or null".format(where))
            return ("http", http["status"], body)
    raise _Malformed(
        "{}: unknown check {} (succeeds, true, nonempty, equals, http)".format(
            where, _to_json(check)
        )
    )


def _check_retry(where, retry):
    """``(attempts, interval, max_interval, within)`` or ``None``; ``within`` may be ``None``."""
    if retry is None:
        return None
    if not isinstance(retry, dict):
        raise _Malformed("{}: `retry` is not an object".format(where))
    attempts = retry.get("attempts")
    if not _is_int(attempts) or attempts < 1:
        raise _Malformed("{}: `retry.attempts` is not a positive integer".format(where))
    values = []
    for key in ("interval", "max_interval", "within"):
        value = retry.get(key)
        if value is None and key != "interval":
            values.append(None)
            continue
        if not _is_number(value) or value < 0 or value != value:
            raise _Malformed("{}: `retry.{}` is not a number of seconds".format(where, key))
        values.append(float(value))
    return attempts, values[0], values[1], values[2]


def _check_step(index, step):
    where = "step {}".format(index)
    fun, arg, kwarg = _check_call(where, step)
    check = _check_check(where, step.get("check"))
    unless = step.get("unless")
    if unless is not None:
        unless = _check_call(where + " unless", unless)
    retry = _check_retry(where, step.get("retry"))
    return {
        "fun": fun,
        "arg": arg,
        "kwarg": kwarg,
        "check": check,
        "unless": unless,
        "retry": retry,
    }


def _my_plan(plans, hosts, minion):
    """This minion's checked steps, or ``None`` when ``hosts`` does not name it."""
    if not isinstance(plans, (list, tuple)):
        raise _Malformed("`plans` is not a list of plans")
    if not isinstance(hosts, dict):
        raise _Malformed("`hosts` is not an object of minion id to plan index")
    if minion not in hosts:
        return None
    index = hosts[minion]
    if not _is_int(index) or not 0 <= index < len(plans):
        raise _Malformed(
            "hosts[{}] = {} is not a plan index (there are {} plans)".format(
                _to_json(minion), _to_json(index), len(plans)
            )
        )
    plan = plans[index]
    if not isinstance(plan, (list, tuple)):
        raise _Malformed("plan {} is not a list of steps".format(index))
    return [_check_step(i, step) for i, step in enumerate(plan)]


# ------------------------------------------------------------------------------------ one call


def _clear_retcode():
    try:
        __context__.pop("retcode", None)
    except Exception:  # pylint: disable=broad-except
        pass


def _call(fun, arg, kwarg):
    """Calls ``fun`` and judges it ("succeeds"): ``(ok, ret, retcode, error)``."""
    try:
        func = __salt__[fun]
    except Exception:  # pylint: disable=broad-except
        func = None
    if func is None:
        return False, None, None, "'{}' is not available.".format(fun)
    _clear_retcode()
    try:
        ret = func(*arg, **kwarg)
    except TypeError as exc:
        _clear_retcode()
        return False, None, None, "Passed invalid arguments: {}".format(exc)
    except (Exception, SystemExit) as exc:  # pylint: disable=broad-except
        _clear_retcode()
        return False, None, None, "{}: {}".format(type(exc).__name__, exc)
    try:
        rc = __context__.get("retcode")
    except Exception:  # pylint: disable=broad-except
        rc = None
    # a retcode left in __context__ would become the job's retcode
    _clear_retcode()
    # cmd.run_all sets both: its dict says more (stderr)
    if isinstance(ret, dict):
        code = ret.get("retcode")
        if _is_int(code) and code != 0:
            text = ""
            for key in ("stderr", "stdout"):
                out = ret.get(key)
                if isinstance(out, str) and out.strip():
                    text = out.strip()
                    break
            error = "retcode {}: {}".format(code, text) if text else "retcode {}".format(code)
            return False, ret, code, error
    if rc is not None and rc is not False and rc != 0:
        code = int(rc) if _is_number(rc) or isinstance(rc, bool) else 1
        return False, ret, code, "retcode {}".format(code)
    if isinstance(ret, dict):
        if ret and all(isinstance(k, str) and "_|-" in k for k in ret):
            comments = []
            failed = False
            for state in ret.values():
                if isinstance(state, dict) and state.get("result") is False:
                    failed = True
                    comment = state.get("comment")
                    if isinstance(comment, (list, tuple)):
                        comment = "\n".join(str(c) for c in comment)
                    if comment:
                        comments.append(str(comment))
            if failed:
                return False, ret, None, "; ".join(comments) or "a state failed"
    return True, ret, None, None


def _apply_check(check, ret):
    """The error of ``check`` on a successful call's ``ret``, or ``None`` when it passes."""
    kind = check[0]
    if kind == "succeeds":
        return None
    if kind == "true":
        return None if ret is True else "expected true, got {}".format(_to_json(ret))
    if kind == "nonempty":
        if isinstance(ret, str) and ret:
            return None
        return "expected a path, got {}".format(_to_json(ret))
    if kind == "equals":
        want = check[1]
        if isinstance(ret, str) and ret.translate(_ASCII_LOWER) == want.translate(_ASCII_LOWER):
            return None
        return "expected {}, got {}".format(want, _to_json(ret))
    # http
    status, body = check[1], check[2]
    if not isinstance(ret, dict):
        return "no status in {}".format(_to_json(ret))
    got = ret.get("status")
    # http.query answers status 0 (with status=True) when it got no answer at all
    if got is None or got == 0:
        if ret.get("error"):
            return str(ret["error"])
        return "no status in {}".format(_to_json(ret))
    if got != status:
        return "HTTP {}".format(got)
    if body is not None:
        text = ret.get("text")
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not isinstance(text, str) or body not in text:
            return "HTTP {} without the expected body text".format(got)
    return None


def _attempt(step):
    """One call of the step plus its check: ``(ok, ret, retcode, error)``."""
    ok, ret, retcode, error = _call(step["fun"], step["arg"], step["kwarg"])
    if ok:
        error = _apply_check(step["check"], ret)
        ok = error is None
    return ok, ret, retcode, error


def _run_step(step, conditions):
    """One step; ``conditions`` holds this job's answers to the conditions asked so far."""
    started = time.monotonic()
    result = {
        "fun": step["fun"],
        "ok": True,
        "skipped": False,
        "ret": None,
        "retcode": None,
        "error": None,
        "ms": 0.0,
        "attempts": 0,
    }
    if step["unless"] is not None:
        # a condition is asked once per job: later steps with an equal one reuse its answer
        key = json.dumps(_plain(list(step["unless"])), sort_keys=True)
        if key not in conditions:
            ok, ret, _, _ = _call(*step["unless"])
            conditions[key] = bool(ok and ret)
        if conditions[key]:
            result["skipped"] = True
            result["ms"] = round((time.monotonic() - started) * 1000.0, 3)
            return result
    retry = step["retry"]
    attempts, delay, max_delay, within = retry if retry is not None else (1, 0.0, None, None)
    first = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        ok, ret, retcode, error = _attempt(step)
        if ok or attempt >= attempts:
            break
        pause = delay if max_delay is None else min(delay, max_delay)
        if within is not None and (time.monotonic() - first) + pause > within:
            break
        time.sleep(pause)
        delay = delay * 2
    result.update(
        ok=ok,
        ret=_plain(ret),
        retcode=retcode,
        error=None if error is None else _cut(error),
        attempts=attempt,
    )
    result["ms"] = round((time.monotonic() - started) * 1000.0, 3)
    return result


# ----------------------------------------------------------------------------------- functions


def steps(plans=None, hosts=None):
    """
    Runs this minion's plan of steps in order and stops after the first failing one.

    plans
        List of plans; a plan is a list of step objects ``{"fun", "arg", "kwarg", "check",
        "unless", "retry"}``.
    hosts
        Object of minion id to the index of its plan in ``plans``.

    Returns ``{"pushguide": 1, "minion": <id>, "steps": [...]}`` (plus ``"error"`` when this
    minion has no steps or the input is malformed). Never raises.

    CLI Example (pushguide sends this through salt-api):

    .. code-block:: bash

        salt web-01 pushguide.steps plans='[[{"fun": "test.true", "check": "true"}]]' hosts='{"web-01": 0}'
    """
    minion = _my_id()
    out = {"pushguide": PROTOCOL, "minion": minion, "steps": []}
    try:
        plan = _my_plan(plans, hosts, minion)
    except _Malformed as exc:
        out["error"] = _cut(exc)
        return out
    if plan is None:
        out["error"] = "no steps for this minion"
        return out
    try:
        conditions = {}
        for step in plan:
            result = _run_step(step, conditions)
            out["steps"].append(result)
            if not result["ok"]:
                break
    except Exception as exc:  # pylint: disable=broad-except
        out["error"] = _cut("internal error: {}: {}".format(type(exc).__name__, exc))
    _clear_retcode()
    return out


def version():
    """
    The protocol version of this module: ``{"pushguide": 1}``.

    CLI Example:

    .. code-block:: bash

        salt '*' pushguide.version
    """
    return {"pushguide": PROTOCOL}


def free_space(path, needed):
    """
    Checks that the filesystem holding ``path`` (or its nearest existing parent directory) has
    ``needed`` bytes free: ``{"path": <dir>, "available": n, "needed": needed}``; raises
    CommandExecutionError when it has fewer.

    CLI Example:

    .. code-block:: bash

        salt '*' pushguide.free_space /srv/shop/releases/1.4.2 500000000
    """
    if not isinstance(path, str) or not path:
        raise CommandExecutionError("path must be a non-empty string")
    if not _is_int(needed) or needed < 0:
        raise CommandExecutionError("needed must be a number of bytes")
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    try:
        available = shutil.disk_usage(current).free
    except OSError as exc:
        raise CommandExecutionError("cannot read the free space at {}: {}".format(current, exc))
    if available < needed:
        raise CommandExecutionError(
            "only {} bytes free at {}, the release needs {}".format(available, current, needed)
        )
    return {"path": current, "available": available, "needed": needed}


def _valid_version(name):
    """``pushguide_core::validate::version``: ``[A-Za-z0-9][A-Za-z0-9._+-]*``, no ``..``,
    at most 128 bytes."""
    return (
        isinstance(name, str)
        and 0 < len(name.encode("utf-8")) <= _VERSION_MAX
        and ".." not in name
        and name[0] in _ALNUM
        and all(c in _VERSION_CHARS for c in name)
    )


def _version_key(name):
    """``pushguide_core::steps::version_cmp`` as a sort key: runs of ASCII digits and of other
    characters; a digit run that fits u64 is ``(0, number)`` and sorts before text ``(1, text)``;
    a longer digit run is text; a shorter prefix sorts first."""
    parts = []
    run = ""
    digits = False
    for c in name:
        is_digit = c in _DIGITS
        if is_digit != digits and run:
            parts.append(_version_part(run, digits))
            run = ""
        digits = is_digit
        run += c
    if run:
        parts.append(_version_part(run, digits))
    return parts


def _version_part(run, digits):
    if digits:
        number = int(run)
        if number <= _U64_MAX:
            return (0, number)
    return (1, run)


def prune(releases_dir, keep, protect=None):
    """
    Removes old releases: the directories of ``releases_dir`` named like versions, newest first in
    natural version order (1.10 is newer than 1.9), beyond the first ``keep``, except those named in
    ``protect``. Returns ``{"removed": [...], "kept": [...]}`` (newest first). A missing
    ``releases_dir`` removes nothing.

    CLI Example:

    .. code-block:: bash

        salt '*' pushguide.prune /srv/shop/releases 3 protect='["1.4.2"]'
    """
    if not isinstance(releases_dir, str) or not releases_dir:
        raise CommandExecutionError("releases_dir must be a non-empty string")
    if not _is_int(keep) or keep < 0:
        raise CommandExecutionError("keep must be a number of releases (0 or more)")
    if protect is None:
        protect = []
    if not isinstance(protect, (list, tuple)) or not all(isinstance(p, str) for p in protect):
        raise CommandExecutionError("protect must be a list of version names")
    if not os.path.isdir(releases_dir):
        return {"removed": [], "kept": []}
    try:
        with os.scandir(releases_dir) as entries:
            names = sorted(
                e.name for e in entries if e.is_dir(follow_symlinks=False) and _valid_version(e.name)
            )
    except OSError as exc:
        raise CommandExecutionError("cannot list {}: {}".format(releases_dir, exc))
    names.sort(key=_version_key, reverse=True)
    protected = set(protect)
    removed, kept = [], []
    for n, name in enumerate(names):
        if n < keep or name in protected:
            kept.append(name)
            continue
        target = os.path.join(releases_dir, name)
        try:
            shutil.rmtree(target)
        except OSError as exc:
            raise CommandExecutionError(
                "cannot remove {} (removed before it: {}): {}".format(
                    target, ", ".join(removed) or "nothing", exc
                )
            )
        removed.append(name)
    return {"removed": removed, "kept": kept}
