"""A small stand-in for the Hugging Face Hub on the loopback, for tests: it answers the part of the Hub's HTTP API
that huggingface_hub's snapshot_download uses (a repo's revision info, its file tree, each file's HEAD and GET
under /resolve/), for repos a test writes, with the Hub's error codes (RepoNotFound, RevisionNotFound,
EntryNotFound, GatedRepo). Point huggingface_hub at it with HF_ENDPOINT=server.url. `requests` logs what was
asked, so a test can count downloads."""
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hub:
    def __init__(self):
        self.repos = {}      # (kind, repo_id) -> {revision: {path: bytes}}
        self.gated = {}      # (kind, repo_id) -> the status its files answer: 401 (not logged in) or 403
        self.requests = []   # (method, path), in order
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add(self, repo_id, files, revision="main", kind="model", gated=None):
        """files: {path: bytes or str} at a revision (a branch or tag name, or a commit)."""
        self.repos.setdefault((kind, repo_id), {})[revision] = {
            p: b.encode() if isinstance(b, str) else b for p, b in files.items()}
        if gated:
            self.gated[(kind, repo_id)] = gated

    def commit(self, kind, repo_id, revision):
        return hashlib.sha1(f"{kind}/{repo_id}@{revision}".encode()).hexdigest()

    def find(self, kind, repo_id, revision):
        """(files, commit) of a revision, named or by its commit; None for a revision the repo lacks."""
        for name, files in self.repos.get((kind, repo_id), {}).items():
            if revision in (name, self.commit(kind, repo_id, name)):
                return files, self.commit(kind, repo_id, name)
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def answer(self, status, body=b"", headers=(), error=None):
                if isinstance(body, (dict, list)):
                    body = json.dumps(body).encode()
                self.send_response(status)
                for k, v in [*headers, *([("X-Error-Code", error)] if error else [])]:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def route(self):
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path))
                api = re.fullmatch(r"/api/(models|datasets)/([^/]+/[^/]+)/(revision|tree)/([^/]+)(/.*)?", path)
                resolve = re.fullmatch(r"/(datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if api:
                    kind, repo_id, what, revision = api.group(1)[:-1], api.group(2), api.group(3), api.group(4)
                elif resolve:
                    kind = "dataset" if resolve.group(1) else "model"
                    repo_id, revision, file = resolve.group(2), resolve.group(3), resolve.group(4)
                else:
                    return self.answer(404)
                if (kind, repo_id) not in hub.repos:  # the Hub answers 401 for a repo it does not show you
                    return self.answer(401, {"error": "Repository not found"}, error="RepoNotFound")
                found = hub.find(kind, repo_id, revision)
                if found is None:
                    return self.answer(404, {"error": "Invalid rev id"}, error="RevisionNotFound")
                files, commit = found
                if api and what == "revision":
                    return self.answer(200, {"id": repo_id, "sha": commit,
                                             "siblings": [{"rfilename": p} for p in sorted(files)]})
                if api:  # the tree, recursive
                    return self.answer(200, [{"type": "file", "path": p, "size": len(b),
                                              "oid": hashlib.sha1(b).hexdigest()} for p, b in sorted(files.items())])
                if (kind, repo_id) in hub.gated:
                    return self.answer(hub.gated[(kind, repo_id)], {"error": "gated"}, error="GatedRepo")
                if file not in files:
                    return self.answer(404, {"error": "Entry not found"}, error="EntryNotFound")
                body = files[file]
                return self.answer(200, body, headers=[("X-Repo-Commit", commit),
                                                       ("ETag", f'"{hashlib.sha1(body).hexdigest()}"')])

            do_GET = do_HEAD = route

        return Handler
