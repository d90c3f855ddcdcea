"""A gRPC client that knows nothing of ggufd but its address: every message type comes from
the daemon's server reflection. Used by tests/grpc_python.rs.

usage: reflection_client.py TARGET   (host:port or unix:/path)
Prints one JSON object on the last line.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    target = sys.argv[1]
    # Over a Unix socket grpc-core sends the socket path as :authority, which the daemon's HTTP/2
    # stack (hyperium/h2) rejects as malformed; "localhost" is the usual convention there.
    options = [("grpc.default_authority", "localhost")] if target.startswith("unix:") else []
    channel = grpc.insecure_channel(target, options=options)
    database = ProtoReflectionDescriptorDatabase(channel)
    pool = descriptor_pool.DescriptorPool(database)

    def method(service: str, name: str, streaming: bool = False):
        m = pool.FindServiceByName(service).methods_by_name[name]
        request = message_factory.GetMessageClass(m.input_type)
        response = message_factory.GetMessageClass(m.output_type)
        call = channel.unary_stream if streaming else channel.unary_unary
        stub = call(
            f"/{service}/{name}",
            request_serializer=request.SerializeToString,
            response_deserializer=response.FromString,
        )
        return request, stub

    health_request, health = method("grpc.health.v1.Health", "Check")
    status = health(health_request(service=""), timeout=10)
    serving = status.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_number[status.status].name

    list_request, list_models = method("ggufd.v1.Models", "ListModels")
    models = [m.name for m in list_models(list_request(), timeout=10).models]

    generate_request, generate = method("ggufd.v1.Inference", "Generate", streaming=True)
    request = generate_request(prompt="The capital of France is", max_tokens=16)
    request.sampling.temperature = 0.0
    text, ids, done = "", [], None
    for response in generate(request, timeout=60):
        if response.WhichOneof("event") == "delta":
            text += response.delta.text
            ids += list(response.delta.token_ids)
        else:
            done = response.done
    finish = done.DESCRIPTOR.fields_by_name["finish_reason"].enum_type.values_by_number[
        done.finish_reason
    ].name

    try:
        list(generate(generate_request(model="no-such-model", prompt="x"), timeout=10))
        unknown_model = "OK"
    except grpc.RpcError as e:
        unknown_model = e.code().name

    print(
        json.dumps(
            {
                "services": sorted(database.get_services()),
                "health": serving,
                "models": models,
                "text": text,
                "ids": ids,
                "finish": finish,
                "completion_tokens": done.usage.completion_tokens,
                "unknown_model": unknown_model,
            }
        )
    )


if __name__ == "__main__":
    main()
