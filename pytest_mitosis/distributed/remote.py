"""pytest-xdist workers on other hosts (``--tx ssh=...``, ``socket=...``, ``popen//chdir=...``).

The controller (:class:`Controller`, in ``pytest_configure_node``) sends every worker its host,
trials folder, commit and the variant fingerprints of every trial it would collect, plus an
execnet channel answered by a :class:`~pytest_mitosis.distributed.shipping.StoreServer`. Each worker
(:class:`Worker`, registered at configure on a worker):

- before its first trial, compares its checkout and fingerprints with the controller's
  (:mod:`pytest_mitosis.checks.worker`); a mismatch fails every trial of that worker at setup
  with one message, before any kernel starts;
- if it shares the controller's host *and* trials folder (``-n 2`` on one machine), writes the
  store directly; otherwise, unless the controller's store says it is ``shared``
  (a database server every host reaches: then each host writes it directly and keeps its
  artifacts in its own trials folder), records its trials through the controller
  (:class:`~pytest_mitosis.distributed.shipping.RemoteStore`), which also receives each trial's folder.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from ..pytest_layer.session import MitosisSession
    from ..store import TrialStore
    from .shipping import RemoteStore, StoreServer

INPUT = "mitosis_remote"
CHANNEL = "mitosis_store_channel"


def _here(path: Path) -> str:
    return os.path.realpath(path)


class Controller:
    """The controller's side: what every worker gets, and the servers that record their trials."""

    def __init__(self, mitosis: MitosisSession) -> None:
        self.mitosis = mitosis
        self._checkout: dict[str, Any] | None = None
        self._variants: dict[str, dict[str, str]] | None = None
        #: held by every worker's server while it uses the store (execnet's threads), and by a crash's record
        self.lock = threading.Lock()
        self._servers: list[StoreServer] = []
        #: xdist's gateway id ("gw0") → the server of that worker (a crash report names the gateway)
        self.servers: dict[str, StoreServer] = {}
        #: trial key → the controller's folder of each trial a worker sent
        self.shipped: dict[str, Path] = {}

    def checkout(self) -> dict[str, Any]:
        """The controller's checkout as every worker gets it: host, trials folder, commit and debug flag, read
        once for all workers (JSON-able)."""
        if self._checkout is None:
            mitosis = self.mitosis
            checkout: dict[str, Any] = {
                "host": socket.gethostname(),
                "trials": None,
                "commit": None,
                "debug": mitosis.context.settings.debug,
            }
            try:
                checkout["trials"] = _here(mitosis.context.project().trials_folder)
                checkout["commit"] = mitosis.context.repo().commit
            except (ConfigError, ImportError, OSError):
                pass  # a project or git that cannot be read: the controller refuses the session before any trial
            self._checkout = checkout
        return self._checkout

    def variants(self) -> dict[str, dict[str, str]] | None:
        """Every trial's fingerprints, computed once, and only for a worker with a checkout of its own
        (it imports the steps' modules here, which a controller of local workers never needs)."""
        if self._variants is None:
            from ..checks.worker import variant_fingerprints
            from ..identity.trial import UnfingerprintableValue, identify

            found: dict[str, dict[str, str]] = {}
            try:
                experiments = self.mitosis.context.experiments()
            except ConfigError:
                return None  # the workers report the same error when they collect
            for experiment in experiments:
                for spec in experiment.trials:
                    try:
                        found[spec.item_name] = variant_fingerprints(
                            identify(spec, self.mitosis.context.seed, strict=not self.mitosis.context.settings.debug)
                        )
                    except UnfingerprintableValue:
                        pass  # that trial fails at its setup on the worker, saying why
            self._variants = found
        return self._variants

    def configure_node(self, node: Any) -> None:
        from .shipping import END, StoreServer

        spec = node.gateway.spec
        own_checkout = not spec.popen or bool(spec.chdir)  # else: this machine, this directory
        node.workerinput[INPUT] = {
            **self.checkout(),
            "variants": self.variants() if own_checkout else None,
        }
        channel = node.gateway.newchannel()
        server = StoreServer(
            channel, self._store, self._trials(), self.lock, self.shipped, session=self.mitosis.context.session_key
        )
        channel.setcallback(server, endmarker=END)
        self._servers.append(server)
        self.servers[str(node.gateway.id)] = server
        node.workerinput[CHANNEL] = channel

    def _store(self) -> TrialStore:
        return self.mitosis.context.store()

    def _trials(self) -> Path:
        try:
            return self.mitosis.context.project().trials_folder
        except ConfigError:
            return Path(os.devnull)  # never reached: no trial runs without a project

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A shipped trial's HTML is named by its path on the controller (summary, junit XML)."""
        props = report.user_properties
        key = dict(props).get("mitosis.key")
        folder = self.shipped.get(str(key)) if key is not None else None
        if folder is None:
            return
        for index, (name, value) in enumerate(props):
            if name == "mitosis.html":
                html = str(folder / Path(str(value)).name)
                props[index] = (name, html)
                if isinstance(report.longrepr, str):  # "notebook: PATH" of a failed trial
                    report.longrepr = report.longrepr.replace(str(value), html)

    @pytest.hookimpl(tryfirst=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        """Before the store closes: a worker's channel that ends later writes nothing."""
        with self.lock:
            for server in self._servers:
                server.closed = True
        config.pluginmanager.unregister(self)


class Worker:
    """A worker's side: the check before its first trial, and the store it records through."""

    def __init__(self, mitosis: MitosisSession, sent: dict[str, Any], channel: Any, worker: str) -> None:
        self.mitosis = mitosis
        #: what the controller sent (:meth:`Controller.checkout`, and its variants' fingerprints for a worker
        #: with a checkout of its own)
        self.sent = sent
        self.channel = channel
        self.worker = worker
        self.host = socket.gethostname()
        self._refusal: str | None | bool = False  # False: not checked yet
        #: the trial whose setup showed the refusal in full (the others of this worker point to it)
        self._refused_first: str | None = None

    def local(self) -> bool:
        """The controller's host and trials folder: the store is written directly, as always."""
        try:
            trials = _here(self.mitosis.context.project().trials_folder)
        except ConfigError:
            return True  # nothing will run
        return self.host == self.sent.get("host") and trials == self.sent.get("trials")

    @pytest.hookimpl(tryfirst=True)
    def pytest_mitosis_make_store(self, config: pytest.Config, folder: Path) -> TrialStore | None:
        if self.local() or self.channel is None:
            return None
        from .shipping import RemoteStore

        proxy = RemoteStore(self.channel, trials=folder, host=self.host, location="the controller's store")
        answer = proxy._call("open", worker=self.worker, host=self.host)
        if answer["shared"]:
            return None  # a store every host reaches: this worker's own store writes it directly
        proxy.location = f"{answer['location']} (on the controller, host {self.sent.get('host')})"
        try:
            self.mitosis.preflight.prepare_trials_folder()  # where this host's trials run before they travel
        except pytest.UsageError as err:
            from ..store import StoreError

            raise StoreError(f"{err} (on host {self.host})") from None
        self._sweep(proxy, folder)
        return proxy

    def _sweep(self, proxy: RemoteStore, folder: Path) -> None:
        """Staging folders a killed worker left on this host, once the controller's store says their trial is over."""
        from ..execution.artifacts import leftover_staging, remove_staging
        from ..store import valid_key
        from .wire import MAX_KEYS

        keys = [key for key in leftover_staging(folder) if valid_key(key)]  # the controller takes trial keys only
        for start in range(0, len(keys), MAX_KEYS):
            for key, status in proxy._call("statuses", keys=keys[start : start + MAX_KEYS]).items():
                if status != "running":
                    remove_staging(folder, key)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        from ..pytest_layer.collection import TrialItem

        if not isinstance(item, TrialItem):
            return
        refusal = self.refusal(item.session)
        if refusal is None:
            return
        if self._refused_first is None:
            self._refused_first = item.nodeid
            pytest.fail(refusal, pytrace=False)
        from ..checks.worker import headline

        pytest.fail(
            f"{headline(self.worker, self.host)}: see the error of {self._refused_first} for why.", pytrace=False
        )

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        config.pluginmanager.unregister(self)

    def refusal(self, session: pytest.Session) -> str | None:
        """Computed once, before the first trial: the same message fails every trial of this worker."""
        if self._refusal is False:
            from ..checks.worker import refusal, variant_fingerprints
            from ..identity.trial import UnfingerprintableValue
            from ..pytest_layer.collection import TrialItem

            mitosis = self.mitosis
            own: dict[str, dict[str, str]] = {}
            compared = self.sent.get("variants") is not None  # None: a local worker, the controller's own files
            for item in session.items if compared else ():
                if isinstance(item, TrialItem):
                    try:
                        own[item.spec.item_name] = variant_fingerprints(mitosis.trials.identify(item.nodeid, item.spec))
                    except UnfingerprintableValue:
                        pass  # that trial's own setup says why
            sent = self.sent
            self._refusal = refusal(
                worker=self.worker,
                host=self.host,
                controller_host=str(sent.get("host")),
                controller_commit=sent.get("commit"),
                state=mitosis.context.repo(),
                root=mitosis.context.project().root,
                debug=mitosis.context.settings.debug,
                controller_variants=sent.get("variants"),
                own_variants=own,
            )
        return self._refusal if isinstance(self._refusal, str) else None


def controller(mitosis: MitosisSession) -> Controller:
    """The session's controller side, registered as the plugin ``mitosis-remote`` on first use."""
    manager = mitosis.context.config.pluginmanager
    found = manager.get_plugin("mitosis-remote")
    if isinstance(found, Controller):
        return found
    made = Controller(mitosis)
    manager.register(made, "mitosis-remote")
    return made


def register_worker(mitosis: MitosisSession) -> None:
    """On an xdist worker whose controller sent its checkout: the worker side, as the plugin ``mitosis-remote``."""
    workerinput = getattr(mitosis.context.config, "workerinput", None)
    if workerinput is None or INPUT not in workerinput:
        return
    sent = dict(workerinput[INPUT])
    worker = Worker(mitosis, sent, workerinput.get(CHANNEL), str(workerinput.get("workerid", "?")))
    mitosis.context.config.pluginmanager.register(worker, "mitosis-remote")
