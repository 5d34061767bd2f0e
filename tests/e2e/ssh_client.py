#!/usr/bin/python3
"""Scripted SSH client for lockserver's end-to-end tests (tests/ssh_e2e.rs).

Logs in with paramiko, answers keyboard-interactive prompts from the command line, runs one command and prints
one JSON object describing what the user saw:

  {"ok": bool, "partial": [...], "rounds": [{"title", "instructions", "prompts": [[text, echo], ...]}],
   "banner": str, "error": str, "output": str, "exit": int|null, "elapsed": float}

Answers: a prompt containing "assword" gets --password; a prompt containing "one-time password" gets the
token fetched from --otp-url at that moment (the emulator's control API); any other prompt gets the next
--answer ("" when none is left).
"""
import argparse
import json
import socket
import sys
import time
import urllib.request

import paramiko


def banner_of(t):
    """The server's USERAUTH_BANNER, also once the server has closed (get_banner() answers None then): sshd
    sends the account hook's refusal text as a banner just before it disconnects."""
    banner = getattr(t.auth_handler, "banner", None) if t.auth_handler is not None else None
    if isinstance(banner, bytes):
        return banner.decode("utf-8", "replace")
    return banner or ""


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--key", help="private key file: publickey first")
    p.add_argument("--kbdint", action="store_true", help="keyboard-interactive (after the key, if any)")
    p.add_argument("--password", default="")
    p.add_argument("--answer", action="append", default=[])
    p.add_argument("--otp-url", default="")
    p.add_argument("--command", default="echo LOGGED_IN_OK")
    p.add_argument("--timeout", type=float, default=20.0)
    a = p.parse_args()

    out = {"ok": False, "partial": [], "rounds": [], "banner": "", "error": "", "output": "", "exit": None}
    answers = list(a.answer)
    start = time.monotonic()

    def handler(title, instructions, prompts):
        out["rounds"].append({"title": title, "instructions": instructions,
                              "prompts": [[t, bool(e)] for (t, e) in prompts]})
        replies = []
        for text, _echo in prompts:
            if "assword" in text and "one-time" not in text:
                replies.append(a.password)
            elif "one-time password" in text and a.otp_url:
                with urllib.request.urlopen(a.otp_url, timeout=5) as r:
                    replies.append(json.load(r).get("token") or "")
            else:
                replies.append(answers.pop(0) if answers else "")
        return replies

    t = None
    try:
        sock = socket.create_connection((a.host, a.port), timeout=a.timeout)
        t = paramiko.Transport(sock)
        t.banner_timeout = a.timeout
        t.auth_timeout = a.timeout
        t.start_client(timeout=a.timeout)
        if a.key:
            key = paramiko.Ed25519Key.from_private_key_file(a.key)
            partial = t.auth_publickey(a.user, key)
            out["partial"] = list(partial or [])
        if a.kbdint:
            t.auth_interactive(a.user, handler)
        if not t.is_authenticated():
            raise paramiko.AuthenticationException("not authenticated after the requested methods")
        out["banner"] = banner_of(t)
        ch = t.open_session(timeout=a.timeout)
        ch.settimeout(a.timeout)
        ch.exec_command(a.command)
        data = b""
        while True:
            chunk = ch.recv(65536)
            if not chunk:
                break
            data += chunk
        out["exit"] = ch.recv_exit_status()
        out["output"] = data.decode("utf-8", "replace")
        out["ok"] = True
    except paramiko.BadAuthenticationType as e:
        out["error"] = "BadAuthenticationType: %s allowed=%s" % (e, e.allowed_types)
    except paramiko.AuthenticationException as e:
        out["error"] = "AuthenticationException: %s" % e
    except Exception as e:  # noqa: BLE001 - everything goes into the report
        out["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        if t is not None:
            if not out["banner"]:
                try:
                    out["banner"] = banner_of(t)
                except Exception:  # noqa: BLE001
                    pass
            t.close()
    out["elapsed"] = round(time.monotonic() - start, 3)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
