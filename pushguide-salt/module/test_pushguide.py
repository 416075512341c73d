"""Unit tests of the pushguide salt execution module (pushguide.py beside this file).

Runs without salt: a stub ``salt.exceptions`` module is put into ``sys.modules`` before the import,
and fake ``__salt__``, ``__context__`` and ``__opts__`` dicts are injected the way salt's loader
does. Run with ``python3 test_pushguide.py`` (pushguide-salt/tests/module.rs does).
"""

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import types
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class CommandExecutionError(Exception):
    """Stand-in for salt.exceptions.CommandExecutionError."""


def _load_module():
    salt = types.ModuleType("salt")
    exceptions = types.ModuleType("salt.exceptions")
    exceptions.CommandExecutionError = CommandExecutionError
    salt.exceptions = exceptions
    sys.modules["salt"] = salt
    sys.modules["salt.exceptions"] = exceptions
    spec = importlib.util.spec_from_file_location("pushguide", os.path.join(HERE, "pushguide.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pg = _load_module()


class Fleet:
    """Fake salt functions that record their calls."""

    def __init__(self):
        self.calls = []
        self.flaky_left = 0

    def install(self, context):
        def rec(name, value):
            def f(*args, **kwargs):
                self.calls.append((name, args, kwargs))
                return value(*args, **kwargs) if callable(value) else value

            return f

        def run_all(rc=0, err="", out=""):
            # like salt's cmd.run_all: the retcode in the dict and in __context__
            self.calls.append(("cmd.run_all", (), {"rc": rc}))
            if rc:
                context["retcode"] = rc
            return {"pid": 7, "retcode": rc, "stdout": out, "stderr": err}

        def set_retcode(*args, **kwargs):
            self.calls.append(("test.set_retcode", args, kwargs))
            context["retcode"] = 5
            return "done"

        def boom(*args, **kwargs):
            self.calls.append(("test.boom", args, kwargs))
            raise ValueError("it broke")

        def two_args(a, b):
            self.calls.append(("test.two", (a, b), {}))
            return a + b

        def flaky(*args, **kwargs):
            self.calls.append(("test.flaky", args, kwargs))
            if self.flaky_left > 0:
                self.flaky_left -= 1
                return {"status": 503, "text": "busy"}
            return {"status": 200, "text": "hello ok world"}

        def raises_cee(*args, **kwargs):
            self.calls.append(("test.cee", args, kwargs))
            raise CommandExecutionError("no such file")

        return {
            "test.true": rec("test.true", True),
            "test.false": rec("test.false", False),
            "test.echo": rec("test.echo", lambda x: x),
            "test.none": rec("test.none", None),
            "test.one": rec("test.one", 1),
            "test.path": rec("test.path", "/srv/a/b.zip"),
            "test.empty": rec("test.empty", ""),
            "test.hash": rec("test.hash", "ABCDEF0123"),
            "test.two": two_args,
            "test.boom": boom,
            "test.cee": raises_cee,
            "test.set_retcode": set_retcode,
            "test.flaky": flaky,
            "test.weird": rec("test.weird", {1, 2} and ("a", b"b")),
            "cmd.run_all": rec("cmd.run_all", run_all),
            "state.single": rec(
                "state.single",
                lambda ok=True: {
                    "file_|-a_|-/x_|-managed": {"result": True, "comment": "fine", "changes": {}},
                    "file_|-b_|-/y_|-managed": {
                        "result": ok,
                        "comment": "" if ok else "Source file not found",
                        "changes": {},
                    },
                },
            ),
            "http.query": rec("http.query", lambda **kw: kw.get("answer")),
        }


class Base(unittest.TestCase):
    def setUp(self):
        self.fleet = Fleet()
        self.context = {}
        pg.__context__ = self.context
        pg.__salt__ = self.fleet.install(self.context)
        pg.__opts__ = {"id": "web-01"}
        self.sleeps = []
        self.clock = [1000.0]
        self._sleep, self._mono = pg.time.sleep, pg.time.monotonic
        pg.time.sleep = self._fake_sleep
        pg.time.monotonic = lambda: self.clock[0]

    def tearDown(self):
        pg.time.sleep, pg.time.monotonic = self._sleep, self._mono

    def _fake_sleep(self, seconds):
        self.sleeps.append(seconds)
        self.clock[0] += seconds

    def run_plan(self, plan, minion="web-01"):
        out = pg.steps(plans=[plan], hosts={minion: 0})
        self.assertEqual(out["pushguide"], 1)
        self.assertEqual(out["minion"], "web-01")
        json.dumps(out)  # the return always serializes
        return out

    def one(self, step):
        out = self.run_plan([step])
        self.assertNotIn("error", out)
        self.assertEqual(len(out["steps"]), 1)
        return out["steps"][0]

    def called(self):
        return [c[0] for c in self.fleet.calls]


class StepShape(Base):
    def test_success_lists_every_field(self):
        s = self.one({"fun": "test.echo", "arg": ["hi"]})
        self.assertEqual(
            set(s), {"fun", "ok", "skipped", "ret", "retcode", "error", "ms", "attempts"}
        )
        self.assertEqual(s["fun"], "test.echo")
        self.assertIs(s["ok"], True)
        self.assertIs(s["skipped"], False)
        self.assertEqual(s["ret"], "hi")
        self.assertIsNone(s["retcode"])
        self.assertIsNone(s["error"])
        self.assertEqual(s["attempts"], 1)
        self.assertIsInstance(s["ms"], float)

    def test_args_and_kwargs_are_passed(self):
        s = self.one({"fun": "test.two", "arg": [2], "kwarg": {"b": 3}})
        self.assertEqual(s["ret"], 5)
        s = self.one({"fun": "cmd.run_all", "kwarg": {"out": "x"}})
        self.assertTrue(s["ok"])

    def test_missing_optional_keys(self):
        s = self.one({"fun": "test.none"})
        self.assertTrue(s["ok"])
        s = self.one(
            {"fun": "test.none", "arg": None, "kwarg": None, "check": None, "unless": None, "retry": None}
        )
        self.assertTrue(s["ok"])

    def test_ms_is_measured_with_monotonic(self):
        def slow(*a, **k):
            self.clock[0] += 0.25
            return True

        pg.__salt__["test.slow"] = slow
        s = self.one({"fun": "test.slow"})
        self.assertAlmostEqual(s["ms"], 250.0, places=3)

    def test_non_json_return_is_made_plain(self):
        s = self.one({"fun": "test.weird"})
        self.assertTrue(s["ok"])
        json.dumps(s)

    def test_job_retcode_stays_zero(self):
        self.run_plan([{"fun": "test.set_retcode"}])
        self.assertNotIn("retcode", self.context)


class BaseJudgement(Base):
    def test_missing_function(self):
        s = self.one({"fun": "nosuch.fun"})
        self.assertFalse(s["ok"])
        self.assertEqual(s["error"], "'nosuch.fun' is not available.")
        self.assertIsNone(s["ret"])

    def test_exception(self):
        s = self.one({"fun": "test.boom"})
        self.assertFalse(s["ok"])
        self.assertEqual(s["error"], "ValueError: it broke")
        self.assertIsNone(s["ret"])
        s = self.one({"fun": "test.cee"})
        self.assertEqual(s["error"], "CommandExecutionError: no such file")

    def test_bad_arguments(self):
        s = self.one({"fun": "test.two", "arg": [1]})
        self.assertFalse(s["ok"])
        self.assertTrue(s["error"].startswith("Passed invalid arguments: "), s["error"])
        self.assertIsNone(s["ret"])

    def test_context_retcode(self):
        self.context["retcode"] = 9  # left over from before: cleared before the call
        s = self.one({"fun": "test.true"})
        self.assertTrue(s["ok"])
        s = self.one({"fun": "test.set_retcode"})
        self.assertFalse(s["ok"])
        self.assertEqual(s["retcode"], 5)
        self.assertEqual(s["error"], "retcode 5")

    def test_cmd_run_all_retcode(self):
        s = self.one({"fun": "cmd.run_all", "kwarg": {"rc": 3, "err": "bad thing\n", "out": "o"}})
        self.assertFalse(s["ok"])
        self.assertEqual(s["retcode"], 3)
        self.assertEqual(s["error"], "retcode 3: bad thing")
        self.assertEqual(s["ret"]["stdout"], "o")
        s = self.one({"fun": "cmd.run_all", "kwarg": {"rc": 4, "out": "only stdout"}})
        self.assertEqual(s["error"], "retcode 4: only stdout")
        s = self.one({"fun": "cmd.run_all", "kwarg": {"rc": 0, "err": "warning"}})
        self.assertTrue(s["ok"])

    def test_state_return(self):
        s = self.one({"fun": "state.single", "kwarg": {"ok": True}})
        self.assertTrue(s["ok"])
        s = self.one({"fun": "state.single", "kwarg": {"ok": False}})
        self.assertFalse(s["ok"])
        self.assertEqual(s["error"], "Source file not found")

    def test_error_texts_are_cut_to_500(self):
        s = self.one({"fun": "cmd.run_all", "kwarg": {"rc": 1, "err": "e" * 2000}})
        self.assertEqual(len(s["error"]), 500)
        s = self.one({"fun": "test.echo", "arg": ["x" * 2000], "check": {"equals": "y"}})
        self.assertEqual(len(s["error"]), 500)


class Checks(Base):
    def test_true(self):
        self.assertTrue(self.one({"fun": "test.true", "check": "true"})["ok"])
        s = self.one({"fun": "test.one", "check": "true"})
        self.assertFalse(s["ok"])
        self.assertEqual(s["error"], "expected true, got 1")
        self.assertEqual(s["ret"], 1)
        s = self.one({"fun": "test.false", "check": "true"})
        self.assertEqual(s["error"], "expected true, got false")

    def test_nonempty(self):
        self.assertTrue(self.one({"fun": "test.path", "check": "nonempty"})["ok"])
        s = self.one({"fun": "test.empty", "check": "nonempty"})
        self.assertEqual(s["error"], 'expected a path, got ""')
        s = self.one({"fun": "test.false", "check": "nonempty"})
        self.assertEqual(s["error"], "expected a path, got false")

    def test_equals_ignores_ascii_case(self):
        self.assertTrue(self.one({"fun": "test.hash", "check": {"equals": "abcdef0123"}})["ok"])
        s = self.one({"fun": "test.hash", "check": {"equals": "abcdef0124"}})
        self.assertFalse(s["ok"])
        self.assertEqual(s["error"], 'expected abcdef0124, got "ABCDEF0123"')
        # only ASCII letters fold
        s = self.one({"fun": "test.echo", "arg": ["\u00c9"], "check": {"equals": "\u00e9"}})
        self.assertFalse(s["ok"])
        s = self.one({"fun": "test.one", "check": {"equals": "1"}})
        self.assertEqual(s["error"], "expected 1, got 1")

    def http(self, answer, status=200, body=None):
        return self.one(
            {"fun": "http.query", "kwarg": {"answer": answer}, "check": {"http": {"status": status, "body": body}}}
        )

    def test_http(self):
        self.assertTrue(self.http({"status": 200, "text": "x"})["ok"])
        self.assertTrue(self.http({"status": 200, "text": "all is ok"}, body="is ok")["ok"])
        self.assertEqual(self.http({"status": 500, "text": "x"})["error"], "HTTP 500")
        self.assertEqual(
            self.http({"status": 200, "text": "nope"}, body="ok!")["error"],
            "HTTP 200 without the expected body text",
        )
        self.assertEqual(
            self.http({"status": 200}, body="ok")["error"], "HTTP 200 without the expected body text"
        )
        self.assertEqual(self.http({"error": "connection refused"})["error"], "connection refused")
        # salt's http.query with status=True when nothing answered (seen on salt 3008.4)
        self.assertEqual(
            self.http({"status": 0, "error": "[Errno 111] Connection refused"})["error"],
            "[Errno 111] Connection refused",
        )
        self.assertEqual(self.http({"status": 0})["error"], 'no status in {"status":0}')
        self.assertEqual(self.http({"body": 1})["error"], 'no status in {"body":1}')
        self.assertEqual(self.http("text")["error"], 'no status in "text"')
        self.assertTrue(self.http({"status": 404, "text": ""}, status=404)["ok"])

    def test_a_failing_call_is_not_checked(self):
        s = self.one({"fun": "test.boom", "check": "true"})
        self.assertEqual(s["error"], "ValueError: it broke")


class Unless(Base):
    def test_truthy_condition_skips(self):
        s = self.one({"fun": "test.boom", "unless": {"fun": "test.echo", "arg": ["yes"]}})
        self.assertTrue(s["ok"])
        self.assertTrue(s["skipped"])
        self.assertEqual(s["attempts"], 0)
        self.assertNotIn("test.boom", self.called())

    def test_falsy_condition_runs(self):
        for cond in ({"fun": "test.false"}, {"fun": "test.empty"}, {"fun": "test.none"}):
            self.fleet.calls.clear()
            s = self.one({"fun": "test.true", "unless": cond})
            self.assertFalse(s["skipped"])
            self.assertEqual(self.called()[-1], "test.true")

    def test_failing_condition_runs_the_step(self):
        for cond in (
            {"fun": "nosuch.fun"},
            {"fun": "test.boom"},
            {"fun": "test.set_retcode"},
            {"fun": "cmd.run_all", "kwarg": {"rc": 1, "out": "truthy dict"}},
        ):
            self.fleet.calls.clear()
            s = self.one({"fun": "test.true", "unless": cond})
            self.assertFalse(s["skipped"], cond)
            self.assertTrue(s["ok"])
            self.assertEqual(self.called()[-1], "test.true")


    def test_a_condition_is_asked_once_per_job(self):
        cond = {"fun": "test.echo", "arg": [""]}
        other = {"fun": "test.echo", "arg": ["x"]}
        out = self.run_plan(
            [
                {"fun": "test.true", "unless": cond},
                {"fun": "test.one", "unless": cond},
                {"fun": "test.path", "unless": other},
                {"fun": "test.hash", "unless": cond},
            ]
        )
        self.assertEqual([s["skipped"] for s in out["steps"]], [False, False, True, False])
        # the equal condition was asked once, the other one once
        self.assertEqual(self.called().count("test.echo"), 2)
        # a new job asks again
        self.fleet.calls.clear()
        self.run_plan([{"fun": "test.true", "unless": cond}])
        self.assertEqual(self.called(), ["test.echo", "test.true"])


class Retry(Base):
    def test_retries_with_doubling_sleeps_until_success(self):
        self.fleet.flaky_left = 3
        s = self.one(
            {
                "fun": "test.flaky",
                "check": {"http": {"status": 200, "body": "ok"}},
                "retry": {"attempts": 5, "interval": 1.0, "max_interval": 30.0, "within": 30.0},
            }
        )
        self.assertTrue(s["ok"], s)
        self.assertEqual(s["attempts"], 4)
        self.assertEqual(self.sleeps, [1.0, 2.0, 4.0])
        self.assertAlmostEqual(s["ms"], 7000.0)

    def test_attempts_is_the_total(self):
        self.fleet.flaky_left = 10
        s = self.one(
            {
                "fun": "test.flaky",
                "check": {"http": {"status": 200, "body": None}},
                "retry": {"attempts": 3, "interval": 0.5, "max_interval": 30.0, "within": 300.0},
            }
        )
        self.assertFalse(s["ok"])
        self.assertEqual(s["attempts"], 3)
        self.assertEqual(s["error"], "HTTP 503")
        self.assertEqual(self.sleeps, [0.5, 1.0])
        self.assertEqual(self.called().count("test.flaky"), 3)

    def test_sleeps_are_capped_by_max_interval(self):
        s = self.one(
            {
                "fun": "test.false",
                "check": "true",
                "retry": {"attempts": 6, "interval": 1.0, "max_interval": 3.0, "within": 1000.0},
            }
        )
        self.assertEqual(s["attempts"], 6)
        self.assertEqual(self.sleeps, [1.0, 2.0, 3.0, 3.0, 3.0])

    def test_within_stops_before_a_sleep_that_would_pass_it(self):
        s = self.one(
            {
                "fun": "test.false",
                "check": "true",
                "retry": {"attempts": 10, "interval": 1.0, "max_interval": 30.0, "within": 5.0},
            }
        )
        # 1 + 2 = 3 s slept; the next sleep (4 s) would end at 7 s > 5 s
        self.assertEqual(self.sleeps, [1.0, 2.0])
        self.assertEqual(s["attempts"], 3)
        self.assertFalse(s["ok"])

    def test_no_retry_means_one_attempt(self):
        s = self.one({"fun": "test.false", "check": "true"})
        self.assertEqual(s["attempts"], 1)
        self.assertEqual(self.sleeps, [])

    def test_exceptions_are_retried_too(self):
        s = self.one(
            {"fun": "test.boom", "retry": {"attempts": 2, "interval": 0.1, "max_interval": 1, "within": 10}}
        )
        self.assertEqual(s["attempts"], 2)
        self.assertEqual(self.sleeps, [0.1])


class Plans(Base):
    def test_stops_after_the_first_failure(self):
        out = self.run_plan(
            [
                {"fun": "test.true", "check": "true"},
                {"fun": "test.false", "check": "true"},
                {"fun": "test.echo", "arg": ["never"]},
            ]
        )
        self.assertNotIn("error", out)
        self.assertEqual([s["fun"] for s in out["steps"]], ["test.true", "test.false"])
        self.assertEqual([s["ok"] for s in out["steps"]], [True, False])
        self.assertNotIn("test.echo", self.called())

    def test_skipped_steps_do_not_stop(self):
        out = self.run_plan(
            [
                {"fun": "test.boom", "unless": {"fun": "test.true"}},
                {"fun": "test.echo", "arg": ["after"]},
            ]
        )
        self.assertEqual([s["skipped"] for s in out["steps"]], [True, False])
        self.assertEqual(out["steps"][1]["ret"], "after")

    def test_each_host_runs_its_own_plan(self):
        plans = [[{"fun": "test.echo", "arg": ["plan0"]}], [{"fun": "test.echo", "arg": ["plan1"]}]]
        hosts = {"web-01": 1, "web-02": 0}
        out = pg.steps(plans=plans, hosts=hosts)
        self.assertEqual(out["steps"][0]["ret"], "plan1")
        pg.__opts__ = {"id": "web-02"}
        out = pg.steps(plans=plans, hosts=hosts)
        self.assertEqual(out["minion"], "web-02")
        self.assertEqual(out["steps"][0]["ret"], "plan0")

    def test_missing_minion(self):
        out = pg.steps(plans=[[{"fun": "test.boom"}]], hosts={"web-02": 0})
        self.assertEqual(
            out, {"pushguide": 1, "minion": "web-01", "error": "no steps for this minion", "steps": []}
        )
        self.assertEqual(self.fleet.calls, [])

    def test_empty_plan(self):
        out = pg.steps(plans=[[]], hosts={"web-01": 0})
        self.assertEqual(out, {"pushguide": 1, "minion": "web-01", "steps": []})

    def assert_malformed(self, plans, hosts, words):
        out = pg.steps(plans=plans, hosts=hosts)
        self.assertEqual(out["steps"], [], out)
        self.assertEqual(out["pushguide"], 1)
        self.assertEqual(out["minion"], "web-01")
        self.assertIn(words, out.get("error", ""), out)
        self.assertEqual(self.fleet.calls, [], "nothing runs on malformed input")

    def test_malformed_input(self):
        ok = {"fun": "test.true"}
        self.assert_malformed(None, {"web-01": 0}, "`plans`")
        self.assert_malformed({"a": 1}, {"web-01": 0}, "`plans`")
        self.assert_malformed([[ok]], None, "`hosts`")
        self.assert_malformed([[ok]], [["web-01", 0]], "`hosts`")
        self.assert_malformed([[ok]], {"web-01": 1}, "not a plan index")
        self.assert_malformed([[ok]], {"web-01": "0"}, "not a plan index")
        self.assert_malformed([[ok]], {"web-01": True}, "not a plan index")
        self.assert_malformed([[ok]], {"web-01": -1}, "not a plan index")
        self.assert_malformed([{"fun": "x"}], {"web-01": 0}, "plan 0 is not a list")
        self.assert_malformed([[ok, "test.true"]], {"web-01": 0}, "step 1 is not an object")
        self.assert_malformed([[ok, {"fun": 7}]], {"web-01": 0}, "step 1: `fun` is not a string")
        self.assert_malformed([[{"arg": []}]], {"web-01": 0}, "step 0: `fun` is not a string")
        self.assert_malformed([[{"fun": "a.b", "arg": "x"}]], {"web-01": 0}, "`arg` is not a list")
        self.assert_malformed([[{"fun": "a.b", "kwarg": [1]}]], {"web-01": 0}, "`kwarg` is not an object")
        self.assert_malformed([[{"fun": "a.b", "check": "maybe"}]], {"web-01": 0}, "unknown check")
        self.assert_malformed([[{"fun": "a.b", "check": {"equals": 1}}]], {"web-01": 0}, "`equals`")
        self.assert_malformed([[{"fun": "a.b", "check": {"http": {}}}]], {"web-01": 0}, "`http`")
        self.assert_malformed([[{"fun": "a.b", "unless": "x"}]], {"web-01": 0}, "unless is not an object")
        self.assert_malformed([[{"fun": "a.b", "unless": {"fun": None}}]], {"web-01": 0}, "unless: `fun`")
        self.assert_malformed([[{"fun": "a.b", "retry": {"attempts": 0, "interval": 1}}]], {"web-01": 0}, "attempts")
        self.assert_malformed([[{"fun": "a.b", "retry": {"attempts": 2, "interval": "1"}}]], {"web-01": 0}, "interval")
        # a malformed later step means nothing runs, not even the first
        self.assert_malformed([[ok, ok, {"fun": "a.b", "retry": 3}]], {"web-01": 0}, "step 2")

    def test_other_plans_are_not_validated(self):
        out = pg.steps(plans=[[{"fun": "test.true"}], "garbage"], hosts={"web-01": 0, "x": 1})
        self.assertNotIn("error", out)
        self.assertEqual(len(out["steps"]), 1)


class Version(Base):
    def test_version(self):
        self.assertEqual(pg.version(), {"pushguide": 1})
        self.assertEqual(pg.__virtualname__, "pushguide")
        self.assertEqual(pg.__virtual__(), "pushguide")


class FreeSpace(Base):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="pg-free-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def test_walks_up_to_an_existing_directory(self):
        r = pg.free_space(os.path.join(self.dir, "releases", "1.2.3"), 1)
        self.assertEqual(r["path"], self.dir)
        self.assertEqual(r["needed"], 1)
        self.assertEqual(r["available"], shutil.disk_usage(self.dir).free)

    def test_not_enough_space_raises(self):
        with self.assertRaises(CommandExecutionError) as cm:
            pg.free_space(self.dir, 10**30)
        msg = str(cm.exception)
        self.assertTrue(msg.startswith("only "), msg)
        self.assertIn(" bytes free at {}, the release needs {}".format(self.dir, 10**30), msg)

    def test_as_a_step(self):
        pg.__salt__["pushguide.free_space"] = pg.free_space
        s = self.one({"fun": "pushguide.free_space", "arg": [self.dir, 10**30]})
        self.assertFalse(s["ok"])
        self.assertTrue(s["error"].startswith("CommandExecutionError: only "), s["error"])
        s = self.one({"fun": "pushguide.free_space", "arg": [self.dir, 0]})
        self.assertTrue(s["ok"])
        self.assertEqual(s["ret"]["path"], self.dir)

    def test_bad_arguments(self):
        for args in ((self.dir, "1"), (self.dir, -1), ("", 1), (None, 1)):
            with self.assertRaises(CommandExecutionError):
                pg.free_space(*args)


class Prune(Base):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="pg-prune-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        super().tearDown()

    def make(self, *names):
        for n in names:
            os.makedirs(os.path.join(self.dir, n, "lib"))
            with open(os.path.join(self.dir, n, "lib", "f"), "w") as f:
                f.write(n)

    def left(self):
        return sorted(os.listdir(self.dir))

    def test_natural_order_keeps_the_newest(self):
        self.make("1.9", "1.10", "1.2", "1.10.1", "0.9")
        r = pg.prune(self.dir, 2)
        self.assertEqual(r, {"removed": ["1.9", "1.2", "0.9"], "kept": ["1.10.1", "1.10"]})
        self.assertEqual(self.left(), ["1.10", "1.10.1"])

    def test_protect(self):
        self.make("1.0", "2.0", "3.0", "4.0")
        r = pg.prune(self.dir, 1, protect=["2.0", "nope"])
        self.assertEqual(r, {"removed": ["3.0", "1.0"], "kept": ["4.0", "2.0"]})
        self.assertEqual(self.left(), ["2.0", "4.0"])

    def test_keep_zero_and_more_than_there_are(self):
        self.make("1", "2")
        self.assertEqual(pg.prune(self.dir, 5), {"removed": [], "kept": ["2", "1"]})
        self.assertEqual(pg.prune(self.dir, 0), {"removed": ["2", "1"], "kept": []})
        self.assertEqual(self.left(), [])

    def test_only_directories_with_version_names(self):
        self.make("1.0", "2.0", ".hidden", "a..b", "bad name", "-x")
        with open(os.path.join(self.dir, "3.0"), "w") as f:
            f.write("a file")
        os.symlink(os.path.join(self.dir, "2.0"), os.path.join(self.dir, "9.0"))
        r = pg.prune(self.dir, 0)
        self.assertEqual(r, {"removed": ["2.0", "1.0"], "kept": []})
        self.assertEqual(self.left(), ["-x", ".hidden", "3.0", "9.0", "a..b", "bad name"])

    def test_missing_directory(self):
        self.assertEqual(
            pg.prune(os.path.join(self.dir, "nope"), 1), {"removed": [], "kept": []}
        )

    def test_bad_arguments(self):
        for args in ((self.dir, -1), (self.dir, "2"), ("", 1), (self.dir, 1, "1.0")):
            with self.assertRaises(CommandExecutionError):
                pg.prune(*args)


class VersionRules(unittest.TestCase):
    """The same rules as pushguide_core::validate::version and pushguide_core::steps::version_cmp
    (the examples of their Rust tests and documentation)."""

    def test_valid_names(self):
        for ok in ("1", "2.4.1-rc.1+build7", "a_b", "v1.0", "A" * 128):
            self.assertTrue(pg._valid_version(ok), ok)
        for bad in (
            "",
            "1.0;rm -rf /",
            "../../etc",
            "1..2",
            "1.0\u202e",
            ".1",
            "-1",
            "_1",
            "+1",
            "1 0",
            "1/0",
            "A" * 129,
            "\u00e91",
            "1\u00e9",
            "1\n",
        ):
            self.assertFalse(pg._valid_version(bad), bad)

    def sort(self, names):
        return sorted(names, key=pg._version_key)

    def test_order(self):
        self.assertEqual(self.sort(["1.10", "1.9", "1.2"]), ["1.2", "1.9", "1.10"])
        self.assertEqual(self.sort(["1.0.1", "1.0", "1"]), ["1", "1.0", "1.0.1"])
        # a number sorts before text
        self.assertEqual(self.sort(["1.a", "1.1"]), ["1.1", "1.a"])
        self.assertEqual(self.sort(["a", "1"]), ["1", "a"])
        # leading zeros compare as numbers: equal keys
        self.assertEqual(pg._version_key("1.01"), pg._version_key("1.1"))
        # a digit run too big for u64 is text, after every number
        big = "18446744073709551616"
        self.assertEqual(pg._version_key(big), [(1, big)])
        self.assertEqual(pg._version_key("18446744073709551615"), [(0, 2**64 - 1)])
        self.assertEqual(self.sort([big, "18446744073709551615", "x"]), ["18446744073709551615", big, "x"])
        # text compares by bytes
        self.assertEqual(self.sort(["1-rc", "1+b", "1.x"]), ["1+b", "1-rc", "1.x"])
        self.assertEqual(self.sort(["2.0-rc.2", "2.0-rc.10", "2.0"]), ["2.0", "2.0-rc.2", "2.0-rc.10"])


def _order_mode():
    """``--order``: reads a JSON list of names on stdin and prints which are valid versions and all
    of them sorted by the module's natural order (pushguide-salt/tests/module.rs compares both with
    the Rust functions)."""
    names = json.load(sys.stdin)
    print(
        json.dumps(
            {
                "valid": [n for n in names if pg._valid_version(n)],
                "sorted": sorted(names, key=pg._version_key),
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1:] == ["--order"]:
        _order_mode()
    else:
        unittest.main(verbosity=2)
