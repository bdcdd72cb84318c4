"""EC2 as AWS's own Python SDK (boto3, installed with moto) sees it: what the aws trials check
against, never what the product under test says.

    python ec2.py ENDPOINT REGION instances        # JSON: every instance, with state and tags
    python ec2.py ENDPOINT REGION terminate ID     # terminate one instance behind our back
    python ec2.py ENDPOINT REGION extras           # JSON: security groups and key pairs

Credentials come from the environment (the trial's canary keys).
"""

import json
import sys

import boto3

ENDPOINT, REGION, ACTION = sys.argv[1], sys.argv[2], sys.argv[3]
ec2 = boto3.client("ec2", endpoint_url=ENDPOINT, region_name=REGION)

if ACTION == "instances":
    out = []
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            out.append(
                {
                    "id": i["InstanceId"],
                    "state": i["State"]["Name"],
                    "type": i["InstanceType"],
                    "image": i["ImageId"],
                    "key": i.get("KeyName"),
                    "groups": [g["GroupName"] for g in i.get("SecurityGroups", [])],
                    "address": i.get("PublicIpAddress"),
                    "tags": {t["Key"]: t["Value"] for t in i.get("Tags", [])},
                }
            )
    print(json.dumps(out))
elif ACTION == "terminate":
    ec2.terminate_instances(InstanceIds=[sys.argv[4]])
    print("{}")
elif ACTION == "extras":
    groups = [
        {
            "name": g["GroupName"],
            "ssh_from": [
                r["CidrIp"]
                for p in g.get("IpPermissions", [])
                if p.get("FromPort") == 22
                for r in p.get("IpRanges", [])
            ],
            # Every protocol from the group's own members.
            "members": any(
                p.get("IpProtocol") == "-1"
                and any(pair.get("GroupId") == g["GroupId"] for pair in p.get("UserIdGroupPairs", []))
                for p in g.get("IpPermissions", [])
            ),
        }
        for g in ec2.describe_security_groups()["SecurityGroups"]
        if g["GroupName"] != "default"
    ]
    keys = [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]]
    print(json.dumps({"groups": groups, "keys": keys}))
else:
    sys.exit(f"unknown action {ACTION}")
