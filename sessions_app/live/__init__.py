"""What outlives one client socket in a process.

* hub.py (+ remote.py): one conversation hub per conversation and process: the upstream socket's
  owner for browser sockets, re-attach, and the viewer half on another process;
* fanout.py: live events across processes through the channel layer (at most once, view only);
* subscriber.py: a hub's receiving end of the fan-out, paused and resumed through a layer outage;
* layer_health.py: is the channel layer up (one warning per outage edge), and retry backoff;
* liveness.py: the lease a process holds on its upstream sockets;
* revocation.py: the credentials of this process's open sockets, re-checked;
* lifecycle.py: the drain on SIGTERM (serve.py runs Daphne around it).

Modules are imported by their path (`from sessions_app.live import hub`): importing this package
imports none of them.
"""
