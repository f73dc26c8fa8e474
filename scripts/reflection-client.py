#!/usr/bin/env python3
"""A client with no .proto files: Python grpcio + grpcio-reflection (PyPI) learns EPOP's API
through server reflection, builds the message types from the descriptors it receives, lists
the services, signs in and calls a method with the token.

    python3 scripts/reflection-client.py HOST:PORT EMAIL PASSWORD
"""
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

target, email, password = sys.argv[1:4]
channel = grpc.insecure_channel(target)
db = ProtoReflectionDescriptorDatabase(channel)
pool = descriptor_pool.DescriptorPool(db)

services = sorted(s for s in db.get_services() if s.startswith("epop."))
print("services:", ", ".join(services))
assert len(services) == 10, services


def call(service, method, request, metadata=()):
    m = pool.FindServiceByName(service).FindMethodByName(method)
    req_cls = message_factory.GetMessageClass(m.input_type)
    resp_cls = message_factory.GetMessageClass(m.output_type)
    rpc = channel.unary_unary(
        f"/{service}/{method}",
        request_serializer=req_cls.SerializeToString,
        response_deserializer=resp_cls.FromString,
    )
    return json_format.MessageToDict(rpc(json_format.ParseDict(request, req_cls()), metadata=metadata))


login = call("epop.v1.AuthService", "Login", {"email": email, "password": password})
token = login["accessToken"]
me = call("epop.v1.UserService", "GetMe", {}, metadata=[("authorization", f"Bearer {token}")])
print("signed in as", me["email"], me.get("role"))
assert me["email"] == email
try:
    call("epop.v1.UserService", "GetMe", {})
    raise SystemExit("an anonymous GetMe was answered")
except grpc.RpcError as e:
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e.code()
print("reflection client: ok")
