#!/usr/bin/env python3
"""Checks infra/template.yaml offline, as tests/run.sh runs it:

1. cfn-lint on the SAM template;
2. the template expanded to plain CloudFormation by aws-sam-translator (the transform SAM and
   CloudFormation run), then cfn-lint on that, which also sees the generated resources;
3. IAM on the expanded template: no wildcard action (`*`, `service:*` or any `*` in an
   action), no NotAction, no `Resource: "*"` on an Allow, no managed policies (AWS's own carry
   wildcards), and every function with a role of its own;
4. the webhook's public Function URL has the two resource-based permissions AWS requires:
   lambda:InvokeFunctionUrl with FunctionUrlAuthType NONE, and lambda:InvokeFunction limited
   to calls through the URL (InvokedViaFunctionUrl).

`--self-test` first proves that step 3 and 4 refuse what they must.
Exit 0 when every check passes; the expanded template is written to target/infra/.
"""

import copy
import json
import os
import subprocess
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TEMPLATE = os.path.join(HERE, "template.yaml")
OUT_DIR = os.path.join(ROOT, "target", "infra")
WEBHOOK_FUNCTION = "ShopifyWebhookFunction"


class NoManagedPolicies:
    """The translator's policy loader: the template names no managed policy, so none load."""

    def load(self):
        return {}


def expand(template):
    """The template as CloudFormation, the way SAM's transform turns it out."""
    template = copy.deepcopy(template)
    # The transform wants code in S3; what `sam build` uploads takes the place of the folder.
    globals_function = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_function:
        globals_function["CodeUri"] = "s3://shopsync-artifacts/shopsync.zip"
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            if "CodeUri" in resource.get("Properties", {}):
                resource["Properties"]["CodeUri"] = "s3://shopsync-artifacts/shopsync.zip"
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return transform(template, {}, NoManagedPolicies())


def as_list(value):
    return value if isinstance(value, list) else [value]


def iam_problems(expanded):
    """Every IAM statement or role that breaks the rules, as text."""
    problems = []
    resources = expanded.get("Resources", {})
    documents = []
    for name, resource in resources.items():
        kind = resource.get("Type")
        props = resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            if props.get("ManagedPolicyArns"):
                problems.append(f"{name}: managed policies {props['ManagedPolicyArns']} (write the statements instead)")
            for policy in props.get("Policies", []):
                documents.append((f"{name}/{policy.get('PolicyName')}", policy.get("PolicyDocument", {})))
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            documents.append((name, props.get("PolicyDocument", {})))
        elif kind == "AWS::Lambda::Function" and "Role" not in props:
            problems.append(f"{name}: no role")
    for where, document in documents:
        for index, statement in enumerate(as_list(document.get("Statement", []))):
            at = f"{where} statement {statement.get('Sid', index)}"
            if "NotAction" in statement:
                problems.append(f"{at}: NotAction")
            if "NotResource" in statement:
                problems.append(f"{at}: NotResource")
            for action in as_list(statement.get("Action", [])):
                if isinstance(action, str) and "*" in action:
                    problems.append(f"{at}: wildcard action {action}")
            if statement.get("Effect") == "Allow":
                for resource in as_list(statement.get("Resource", [])):
                    if resource == "*":
                        problems.append(f'{at}: Resource "*"')
    return problems


def url_permission_problems(expanded, function):
    """What the public Function URL of `function` lacks."""
    permissions = [
        r.get("Properties", {})
        for r in expanded.get("Resources", {}).values()
        if r.get("Type") == "AWS::Lambda::Permission"
    ]

    def names_function(props):
        target = props.get("FunctionName")
        return json.dumps(target).find(f'"{function}"') >= 0

    mine = [p for p in permissions if names_function(p)]
    problems = []
    if not any(
        p.get("Action") == "lambda:InvokeFunctionUrl"
        and p.get("Principal") == "*"
        and p.get("FunctionUrlAuthType") == "NONE"
        for p in mine
    ):
        problems.append(f"{function}: no lambda:InvokeFunctionUrl permission for AuthType NONE")
    if not any(
        p.get("Action") == "lambda:InvokeFunction"
        and p.get("Principal") == "*"
        and p.get("InvokedViaFunctionUrl") is True
        for p in mine
    ):
        problems.append(f"{function}: no lambda:InvokeFunction permission limited to the Function URL")
    return problems


def self_test():
    """The checks refuse what they must (a check that cannot fail proves nothing)."""
    def role(statement, **extra):
        props = {"Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [statement]}}]}
        props.update(extra)
        return {"Resources": {"R": {"Type": "AWS::IAM::Role", "Properties": props}}}

    fine = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "arn:aws:sqs:us-east-1:1:q"}
    assert iam_problems(role(fine)) == [], iam_problems(role(fine))
    bad = [
        role(dict(fine, Action="*")),
        role(dict(fine, Action=["sqs:SendMessage", "dynamodb:*"])),
        role(dict(fine, Action="s3:Get*")),
        role(dict(fine, Resource="*")),
        role(dict(fine, Resource=["arn:aws:sqs:us-east-1:1:q", "*"])),
        role({"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:sqs:us-east-1:1:q"}),
        role(fine, ManagedPolicyArns=["arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]),
        {"Resources": {"F": {"Type": "AWS::Lambda::Function", "Properties": {}}}},
    ]
    for template in bad:
        assert iam_problems(template), f"not refused: {json.dumps(template)}"
    url = {"Type": "AWS::Lambda::Permission", "Properties": {
        "Action": "lambda:InvokeFunctionUrl", "Principal": "*", "FunctionUrlAuthType": "NONE",
        "FunctionName": {"Ref": "F"}}}
    invoke = {"Type": "AWS::Lambda::Permission", "Properties": {
        "Action": "lambda:InvokeFunction", "Principal": "*", "InvokedViaFunctionUrl": True,
        "FunctionName": {"Ref": "F"}}}
    assert url_permission_problems({"Resources": {"U": url, "I": invoke}}, "F") == []
    assert len(url_permission_problems({"Resources": {"U": url}}, "F")) == 1
    assert len(url_permission_problems({"Resources": {"I": invoke}}, "F")) == 1
    assert len(url_permission_problems({"Resources": {"U": url, "I": invoke}}, "G")) == 2
    print("infra/check.py: self-test passed")


def cfn_lint(path):
    cfn_lint_bin = os.path.join(os.path.dirname(sys.executable), "cfn-lint")
    result = subprocess.run([cfn_lint_bin, path], capture_output=True, text=True)
    if result.returncode != 0:
        print(result.stdout + result.stderr, file=sys.stderr)
        return [f"cfn-lint {os.path.relpath(path, ROOT)}: exit {result.returncode}"]
    return []


def main():
    if "--self-test" in sys.argv:
        self_test()
    problems = cfn_lint(TEMPLATE)
    with open(TEMPLATE) as f:
        template = yaml_parse(f.read())
    expanded = expand(template)
    os.makedirs(OUT_DIR, exist_ok=True)
    expanded_path = os.path.join(OUT_DIR, "expanded.json")
    with open(expanded_path, "w") as f:
        json.dump(expanded, f, indent=1, sort_keys=True)
    problems += cfn_lint(expanded_path)
    problems += iam_problems(expanded)
    problems += url_permission_problems(expanded, WEBHOOK_FUNCTION)
    functions = [n for n, r in expanded["Resources"].items() if r.get("Type") == "AWS::Lambda::Function"]
    roles = {json.dumps(expanded["Resources"][n]["Properties"].get("Role")) for n in functions}
    if len(roles) != len(functions):
        problems.append(f"{len(functions)} functions share {len(roles)} roles (one role per function)")
    for problem in problems:
        print(f"infra: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"infra/check.py: template and expansion lint clean, {len(functions)} functions with a role each, IAM without wildcards")
    return 0


if __name__ == "__main__":
    sys.exit(main())
