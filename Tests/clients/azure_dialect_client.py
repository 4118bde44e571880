#!/usr/bin/env python3
"""An existing Azure-dialect client, as scripts written against AEP's Azure deployments use the Profile system
jobs API, pointed at the gateway. Standard library only.

Creates a dataset delete by `dataSetId`, a batch delete by `batchId` alone (expecting the gateway's refusal on an AWS
organization), pages with `page`/`limit` until `_page.next` is empty, looks a job up and removes one (200 on Azure,
501 on AWS). Prints a transcript; exits non-zero on any failed check.

    python3 Tests/clients/azure_dialect_client.py --base http://127.0.0.1:8080 --org azure-demo@AdobeOrg
"""

import argparse
import json
import sys
import urllib.error
import urllib.request
import uuid

# As long as the Swift tests' own client waits: a loaded test machine can be slow to answer.
TIMEOUT_SECONDS = 30
MAX_PAGES = 100


def call(args, method, path, body=None):
    """One call; returns (status, parsed body or None, raw text)."""
    headers = {
        "Authorization": "Bearer " + args.token,
        "x-api-key": args.api_key,
        "x-gw-ims-org-id": args.org,
        "x-sandbox-name": args.sandbox,
    }
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(args.base + "/data/core/ups/system/jobs" + path, data=data,
                                     headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    text = raw.decode("utf-8", "replace")
    print("%s %s -> %d %s" % (method, path or "/", status, text[:160]))
    return status, (json.loads(text) if text else None), text


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run(args):
    aws = args.cloud == "aws"

    # Create by dataSetId (random ids, so the script can run again while earlier jobs are still queued).
    created = []
    for _ in range(3):
        dataset = uuid.uuid4().hex[:24]
        status, job, text = call(args, "POST", "", {"dataSetId": dataset})
        check(status == 200, "create by dataSetId: expected 200, got %d %s" % (status, text))
        check(job["jobType"] == "DELETE" and job["dataSetId"] == dataset, "create by dataSetId: %s" % text)
        check(job["status"] == "NEW", "a new job is NEW: %s" % text)
        created.append(job["id"])

    # Create by batchId alone: Azure accepts it; AWS needs the dataset, and the gateway says so.
    status, job, text = call(args, "POST", "", {"batchId": uuid.uuid4().hex})
    if aws:
        check(status == 400, "batch alone on AWS: expected 400, got %d %s" % (status, text))
        check(job["type"] == "/problems/batch-needs-dataset", "batch alone on AWS: %s" % text)
    else:
        check(status == 200, "batch alone on Azure: expected 200, got %d %s" % (status, text))
        check(job["jobType"] == "DELETE" and "batchId" in job, "batch alone on Azure: %s" % text)
        created.append(job["id"])

    # Page through, the way Azure clients loop.
    seen = []
    page = 0
    r = {"_page": {"next": "start"}}
    while r["_page"].get("next", "") != "":
        check(page < MAX_PAGES, "the list did not end within %d pages" % MAX_PAGES)
        status, r, text = call(args, "GET", "?page=%d&limit=2" % page)
        check(status == 200, "list page %d: expected 200, got %d %s" % (page, status, text))
        check(isinstance(r["_page"].get("next"), str), "_page.next must be a string: %s" % text)
        check(len(r["children"]) <= 2, "page %d holds more than the limit" % page)
        seen += [child["id"] for child in r["children"]]
        page += 1
    check(len(seen) == len(set(seen)), "a job was listed twice: %s" % seen)
    missing = set(created) - set(seen)
    check(not missing, "created jobs missing from the list: %s" % sorted(missing))
    print("listed %d jobs in %d pages" % (len(seen), page))

    # Look one up.
    status, job, text = call(args, "GET", "/" + created[0])
    check(status == 200 and job["id"] == created[0], "look up: %d %s" % (status, text))

    # Remove one: Azure removes it; AWS cannot, and the gateway refuses with a problem document.
    status, body, text = call(args, "DELETE", "/" + created[0])
    if aws:
        check(status == 501, "remove on AWS: expected 501, got %d %s" % (status, text))
        check(body["type"] == "/problems/operation-not-supported", "remove on AWS: %s" % text)
    else:
        check(status == 200 and text == "", "remove on Azure: expected 200 and no body, got %d %s" % (status, text))
        status, _, text = call(args, "GET", "/" + created[0])
        check(status == 404, "a removed job is gone: %d %s" % (status, text))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the gateway, e.g. http://127.0.0.1:8080")
    parser.add_argument("--org", required=True, help="the IMS organization")
    parser.add_argument("--cloud", choices=["azure", "aws"],
                        help="the cloud serving the organization (default: aws if the org starts with 'aws')")
    parser.add_argument("--sandbox", default="prod")
    parser.add_argument("--token", default="demo-service-token")
    parser.add_argument("--api-key", default="demo-client")
    args = parser.parse_args()
    args.base = args.base.rstrip("/")
    args.cloud = args.cloud or ("aws" if args.org.startswith("aws") else "azure")

    try:
        run(args)
    except (AssertionError, KeyError, TypeError, ValueError, OSError) as error:
        print("FAILED: %s: %s" % (type(error).__name__, error))
        return 1
    print("OK: %s (%s)" % (args.org, args.cloud))
    return 0


if __name__ == "__main__":
    sys.exit(main())
