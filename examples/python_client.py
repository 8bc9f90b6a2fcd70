#!/usr/bin/env python3
"""A protobuf client for POST /recommend that needs no protoc and no generated code.

The message classes are built at run time from proto/recommend.desc (the FileDescriptorSet of
proto/recommend.proto, kept in sync with it by a test), with the `protobuf` package only:

    pip install protobuf
    python examples/python_client.py --history 50 181 258 --k 5
    python examples/python_client.py --user 1 --model ml100k-teacher --json

Prints the items (or, with --json, the whole answer as JSON); on an error prints the decoded
ErrorBody to stderr and exits with status 1. Uses only the standard library for HTTP.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

DESCRIPTOR = Path(__file__).resolve().parent.parent / "proto" / "recommend.desc"
CONTENT_TYPE = "application/x-protobuf"


def load_messages(path=DESCRIPTOR):
    """Message classes of package distilrec.v1, by short name."""
    files = descriptor_pb2.FileDescriptorSet.FromString(Path(path).read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    names = ["RecommendRequest", "RecommendResponse", "ErrorBody"]
    return {
        n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"distilrec.v1.{n}"))
        for n in names
    }


def recommend(url, messages, history=None, user_id=None, k=None, exclude=(), model=None,
              timeout=10.0):
    """Returns (status, decoded RecommendResponse or ErrorBody, response headers)."""
    req = messages["RecommendRequest"]()
    if history is not None:
        # Marks `history` as present even when empty (an empty history is a valid request).
        req.history.SetInParent()
        req.history.items.extend(history)
    if user_id is not None:
        req.user_id = user_id
    if k is not None:
        req.k = k
    req.exclude.extend(exclude)
    if model is not None:
        req.model = model
    http_req = urllib.request.Request(
        url.rstrip("/") + "/recommend",
        data=req.SerializeToString(),
        headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
        method="POST",
    )
    try:
        with urllib.request.urlopen(http_req, timeout=timeout) as r:
            return r.status, messages["RecommendResponse"].FromString(r.read()), r.headers
    except urllib.error.HTTPError as e:
        body = e.read()
        if e.headers.get("Content-Type", "").startswith(CONTENT_TYPE):
            return e.code, messages["ErrorBody"].FromString(body), e.headers
        raise


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--history", nargs="*", metavar="ITEM", help="item ids, oldest first")
    src.add_argument("--user", help="a user id known to the model")
    p.add_argument("--k", type=int)
    p.add_argument("--exclude", nargs="*", default=[], metavar="ITEM")
    p.add_argument("--model")
    p.add_argument("--json", action="store_true", help="print the whole answer as JSON")
    a = p.parse_args()

    messages = load_messages()
    status, answer, headers = recommend(a.url, messages, history=a.history, user_id=a.user,
                                        k=a.k, exclude=a.exclude, model=a.model)
    if status != 200:
        print(f"HTTP {status} {answer.error_type}: {answer.error}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(json_format.MessageToDict(answer, preserving_proto_field_name=True)))
        return 0
    print(f"model {answer.model} version {answer.version} "
          f"(queue {headers['x-queue-time']} us, inference {headers['x-inference-time']} us)")
    for item in answer.items:
        title = item.title if item.HasField("title") else ""
        print(f"{item.id}\t{item.score:.4f}\t{title}")
    if answer.unknown_items:
        print("unknown items:", " ".join(answer.unknown_items))
    return 0


if __name__ == "__main__":
    sys.exit(main())
