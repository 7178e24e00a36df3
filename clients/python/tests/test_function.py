"""``define_function`` against the real fluxd: the definitions it refuses,
the ``ctx`` that ``invoke`` builds (secrets, env, a host's pieces) for plain
and ``async def`` handlers, the one shared client and connection, and the
error when no socket is set. Values are compared with assert_value(), which
never prints them."""

from __future__ import annotations

import asyncio
import os
import unittest
from typing import Any, Dict, List
from unittest import mock

from flux_secrets import (
    AsyncFunctionContext,
    AsyncSecrets,
    FluxFunction,
    FluxSecretsError,
    FunctionContext,
    SecretNotFound,
    Secrets,
    define_function,
)

from fluxd_harness import TestDaemon, skip_without_binaries
from secret_asserts import assert_no_value, assert_value, error_text

VALUES = {"OPENAI_API_KEY": "sk-fn-python-7e2c91d0", "OTHER_KEY": "other-project-value-3a"}

CLIENT_PREFIX = "flux-secrets-python/"


class DefinitionTests(unittest.TestCase):
    """What define_function accepts and refuses (no daemon needed)."""

    def test_the_decorator_and_the_call_give_a_function(self) -> None:
        @define_function(name="call_openai")
        def call_openai(input: Any, ctx: FunctionContext) -> Any:
            return input

        self.assertIsInstance(call_openai, FluxFunction)
        self.assertEqual(call_openai.name, "call_openai")
        self.assertFalse(call_openai.is_async)
        self.assertEqual(call_openai.invoke(7), 7)

        def handler(input: Any, ctx: FunctionContext) -> Any:
            return input

        fn = define_function(name="plain", handler=handler)
        self.assertIs(fn.handler, handler)
        with self.assertRaises(AttributeError):
            fn.name = "other"  # type: ignore[misc]

    def test_refuses_what_it_cannot_use_saying_what_is_wrong(self) -> None:
        def ok(input: Any, ctx: Any) -> None:
            pass

        def one_arg(input: Any) -> None:
            pass

        def three_args(input: Any, ctx: Any, extra: Any) -> None:
            pass

        cases = [
            (lambda: define_function(), r"the function has no name: @define_function\(name=\"call_openai\"\)"),
            (lambda: define_function(handler=ok), r"the function has no name"),
            (lambda: define_function(ok), r"needs a name: write @define_function\(name=\"\.\.\.\"\), not a bare"),
            (lambda: define_function(name=""), r"name must be a non-empty string, not ''"),
            (lambda: define_function(name=" "), r"name must be a non-empty string, not ' '"),
            (lambda: define_function(name=7), r"name must be a non-empty string, not a int"),  # type: ignore[call-overload]
            (lambda: define_function(name="f", handler="x"), r"the handler of f must be a function, not a str"),  # type: ignore[call-overload]
            (lambda: define_function(name="f")("x"), r"the handler of f must be a function"),  # type: ignore[arg-type]
            (lambda: define_function(name="f", handler=one_arg), r"the handler of f must take \(input, ctx\), not one_arg\(input"),
            (lambda: define_function(name="f")(three_args), r"must take \(input, ctx\), not three_args\("),
        ]
        for make, message in cases:
            with self.subTest(message=message):
                with self.assertRaisesRegex(TypeError, message):
                    make()
        # Handlers that take (input, ctx) in other ways are fine.
        define_function(name="f", handler=lambda input, ctx=None: None)
        define_function(name="f", handler=lambda *args: None)

    def test_invoke_refuses_private_piece_names_and_an_env_that_is_no_mapping(self) -> None:
        fn = define_function(name="f", handler=lambda input, ctx: ctx.env)
        with self.assertRaisesRegex(TypeError, r"f\.invoke: ctx pieces are public names; _x starts with '_'"):
            fn.invoke(None, _x=1)
        with self.assertRaisesRegex(TypeError, r"env must be a mapping of names to values, not list"):
            fn.invoke(None, env=["A=1"])

    def test_a_handler_that_reads_no_secret_runs_without_a_socket(self) -> None:
        fn = define_function(name="double", handler=lambda input, ctx: input * 2)
        with mock.patch.dict(os.environ, {}, clear=True):
            self.assertEqual(fn.invoke(21), 42)

    def test_without_a_socket_reading_ctx_secrets_says_what_to_set(self) -> None:
        fn = define_function(name="call_openai", handler=lambda input, ctx: ctx.secrets.get("A", "fallback"))
        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaises(FluxSecretsError) as cm:
                fn.invoke({})
        err = cm.exception
        self.assertEqual(err.code_name, "not_configured")
        self.assertRegex(
            str(err),
            r"^function call_openai read ctx\.secrets, but FLUX_SECRETS_SOCKET is not set: "
            r"set FLUX_SECRETS_SOCKET to the project's socket, <runtime>/projects/<project>\.sock",
        )
        self.assertIn("`fluxd dev -- CMD` or `fluxctl run -- CMD`", str(err))

        with mock.patch.dict(os.environ, {"FLUX_SECRETS_SOCKET": "", "FLUX_PROJECT": "my-app"}, clear=True):
            with self.assertRaises(FluxSecretsError) as cm:
                fn.invoke({})
        self.assertIn("(FLUX_PROJECT=my-app names the project, not the socket", str(cm.exception))
        self.assertIn("<runtime>/projects/my-app.sock", str(cm.exception))

        async def reads(input: Any, ctx: AsyncFunctionContext) -> str:
            return await ctx.secrets.get("A")

        afn = define_function(name="async_reader", handler=reads)
        with mock.patch.dict(os.environ, {}, clear=True):
            with self.assertRaisesRegex(FluxSecretsError, r"^function async_reader read ctx\.secrets"):
                asyncio.run(afn.invoke({}))

    def test_the_handlers_exceptions_reach_the_caller_as_they_are(self) -> None:
        boom = ValueError("from the handler")

        def raises(input: Any, ctx: Any) -> None:
            raise boom

        with self.assertRaises(ValueError) as cm:
            define_function(name="raises", handler=raises).invoke(None)
        self.assertIs(cm.exception, boom)


@skip_without_binaries
class InvokeTests(unittest.TestCase):
    daemon: TestDaemon

    @classmethod
    def setUpClass(cls) -> None:
        cls.daemon = TestDaemon.start()
        try:
            cls.daemon.create_project("app")
            cls.daemon.create_project("other")
            cls.daemon.set_secret("app", "OPENAI_API_KEY", VALUES["OPENAI_API_KEY"])
            cls.daemon.set_secret("other", "OTHER_KEY", VALUES["OTHER_KEY"])
        except BaseException:
            cls.daemon.cleanup()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.daemon.cleanup()

    def setUp(self) -> None:
        patcher = mock.patch.dict(os.environ, {"FLUX_SECRETS_SOCKET": self.daemon.project_socket("app")})
        patcher.start()
        self.addCleanup(patcher.stop)
        os.environ.pop("FLUX_PROJECT", None)

    def test_ctx_secrets_get_with_and_without_a_default(self) -> None:
        @define_function(name="call_openai")
        def call_openai(input: Dict[str, Any], ctx: FunctionContext) -> Dict[str, Any]:
            return {
                "prompt": input["prompt"],
                "key": ctx.secrets.get("OPENAI_API_KEY"),
                "region": ctx.secrets.get("AWS_REGION", "us-east-1"),
            }

        out = call_openai.invoke({"prompt": "hi"})
        self.assertEqual(out["prompt"], "hi")
        assert_value(out["key"], VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        self.assertEqual(out["region"], "us-east-1")

        missing = define_function(name="missing", handler=lambda input, ctx: ctx.secrets.get("NOT_SET_HERE"))
        with self.assertRaises(SecretNotFound) as cm:
            missing.invoke(None)
        self.assertIn("fluxctl secrets set NOT_SET_HERE", str(cm.exception))

    def test_ctx_env_is_a_read_only_copy_taken_at_first_read(self) -> None:
        fn = define_function(name="env", handler=lambda input, ctx: ctx.env)
        with mock.patch.dict(os.environ, {"FLUX_FN_TEST_TIER": "gold"}):
            env = fn.invoke(None)
        self.assertEqual(env["FLUX_FN_TEST_TIER"], "gold")
        self.assertEqual(env.get("FLUX_SECRETS_SOCKET"), self.daemon.project_socket("app"))
        with self.assertRaises(TypeError):
            env["FLUX_FN_TEST_TIER"] = "x"  # type: ignore[index]
        self.assertNotIn("FLUX_FN_TEST_TIER", fn.invoke(None), "the next invocation sees the change")

        def late(input: Any, ctx: FunctionContext) -> str:
            with mock.patch.dict(os.environ, {"FLUX_FN_TEST_LATE": "yes"}):
                return ctx.env["FLUX_FN_TEST_LATE"]

        self.assertEqual(define_function(name="late", handler=late).invoke(None), "yes")

    def test_a_hosts_pieces_are_attributes_and_its_secrets_and_env_replace_the_defaults(self) -> None:
        other = Secrets(self.daemon.project_socket("other"))
        self.addCleanup(other.close)
        got: Dict[str, Any] = {}

        def handler(input: Any, ctx: FunctionContext) -> str:
            got.update(input=input, request_id=getattr(ctx, "request_id"), secrets=ctx.secrets, env=ctx.env)
            got["repr"] = repr(ctx)
            return ctx.secrets.get("OTHER_KEY")

        fn = define_function(name="pieces", handler=handler)
        env = {"TIER": "free"}
        assert_value(fn.invoke({"n": 1}, request_id="req-1", secrets=other, env=env), VALUES["OTHER_KEY"], "OTHER_KEY")
        self.assertEqual(got["input"], {"n": 1})
        self.assertEqual(got["request_id"], "req-1")
        self.assertIs(got["secrets"], other)
        self.assertIs(got["env"], env)
        self.assertEqual(got["repr"], "<FunctionContext of pieces: secrets, env, request_id>")

    def test_every_invocation_of_every_function_shares_one_client_and_connection(self) -> None:
        seen: List[Secrets] = []

        def peek(input: Any, ctx: FunctionContext) -> str:
            seen.append(ctx.secrets)
            return ctx.secrets.get("OPENAI_API_KEY")

        a = define_function(name="a", handler=peek)
        b = define_function(name="b", handler=peek)
        a.invoke(None)  # connects, if no earlier test did
        before = self.daemon.handshakes(CLIENT_PREFIX)
        for fn in [a, b] * 10:
            assert_value(fn.invoke(None), VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        self.assertEqual(len({id(s) for s in seen}), 1, "ctx.secrets is one client")
        self.assertIsInstance(seen[0], Secrets)
        self.assertEqual(seen[0].socket_path, self.daemon.project_socket("app"))
        self.assertEqual(self.daemon.handshakes(CLIENT_PREFIX), before, "no new connection for 20 invocations")

    def test_an_async_handler_gets_the_shared_asyncio_client(self) -> None:
        seen: List[AsyncSecrets] = []

        @define_function(name="call_openai")
        async def call_openai(input: Dict[str, Any], ctx: AsyncFunctionContext) -> Dict[str, Any]:
            seen.append(ctx.secrets)
            key = await ctx.secrets.get("OPENAI_API_KEY")
            region = await ctx.secrets.get("AWS_REGION", "us-east-1")
            return {"key": key, "region": region, "tier": ctx.env.get("TIER", "free")}

        self.assertTrue(call_openai.is_async)

        async def many() -> List[Dict[str, Any]]:
            return list(await asyncio.gather(*(call_openai.invoke({}) for _ in range(20))))

        first = asyncio.run(call_openai.invoke({}))  # connects
        before = self.daemon.handshakes(CLIENT_PREFIX)
        results = [first, *asyncio.run(many())]
        for r in results:
            assert_value(r["key"], VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
            self.assertEqual((r["region"], r["tier"]), ("us-east-1", "free"))
        self.assertEqual(len({id(s) for s in seen}), 1, "one AsyncSecrets")
        self.assertIsInstance(seen[0], AsyncSecrets)
        # asyncio.run makes a new loop: the client reconnects once on it, then 20
        # concurrent invocations share that one connection.
        self.assertEqual(self.daemon.handshakes(CLIENT_PREFIX), before + 1)

    def test_no_value_in_errors_or_reprs(self) -> None:
        fn = define_function(name="leaky", handler=lambda input, ctx: (ctx.secrets.get("OPENAI_API_KEY"), repr(ctx), repr(ctx.secrets)))
        value, ctx_repr, secrets_repr = fn.invoke(None, request_id="r")
        assert_value(value, VALUES["OPENAI_API_KEY"], "OPENAI_API_KEY")
        assert_no_value(ctx_repr + secrets_repr + repr(fn), VALUES.values(), "the reprs")
        with self.assertRaises(SecretNotFound) as cm:
            define_function(name="nf", handler=lambda input, ctx: ctx.secrets.get("NOPE")).invoke(None)
        assert_no_value(error_text(cm.exception), VALUES.values(), "the error")


if __name__ == "__main__":
    unittest.main()
