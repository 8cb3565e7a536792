using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Resources;

namespace Outpost.Server.Api;

/// <summary>
/// OpenAPI v3, as kubectl reads it: an index at /openapi/v3 with a serverRelativeURL per
/// group version, and per group version a document with the schemas of its kinds and, for
/// each writable kind, a PATCH operation carrying x-kubernetes-group-version-kind and the
/// fieldValidation parameter. Seeing that parameter, kubectl leaves validation to the server
/// (fieldValidation=Strict), which names every bad field.
/// </summary>
public static class KubeOpenApi
{
    private const string ObjectMeta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

    public static void MapKubeOpenApi(this IEndpointRouteBuilder app)
    {
        var documents = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["api/v1"] = Document("", [ResourceKind.Node]).ToJsonString(),
            ["apis/outpost.dev/v1"] = Document("outpost.dev", [ResourceKind.Application, ResourceKind.ConfigSet, ResourceKind.Secret, ResourceKind.Bucket, ResourceKind.AlertRule, ResourceKind.NetworkService]).ToJsonString(),
            ["apis/node.k8s.io/v1"] = Document("node.k8s.io", [ResourceKind.RuntimeClass]).ToJsonString(),
        };
        var index = new JsonObject
        {
            ["paths"] = new JsonObject([.. documents.Select(d => KeyValuePair.Create(d.Key, (JsonNode?)new JsonObject
            {
                ["serverRelativeURL"] = $"/openapi/v3/{d.Key}?hash={Hash(d.Value)}",
            }))]),
        }.ToJsonString();
        app.MapGet("/openapi/v3", () => Results.Text(index, "application/json"));
        foreach (var (path, document) in documents)
        {
            app.MapGet("/openapi/v3/" + path, () => Results.Text(document, "application/json"));
        }
    }

    private static string Hash(string document) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(document)))[..32];

    private static JsonObject Document(string group, ResourceKind[] kinds)
    {
        var paths = new JsonObject();
        var schemas = new JsonObject { [ObjectMeta] = MetaSchema() };
        foreach (var kind in kinds)
        {
            var schemaName = SchemaName(kind);
            var gvk = new JsonObject { ["group"] = group, ["version"] = "v1", ["kind"] = kind.Kind };
            schemas[schemaName] = new JsonObject
            {
                ["type"] = "object",
                ["description"] = $"An Outpost {kind.Kind}.",
                ["properties"] = kind.SpecAtTop
                    ? new JsonObject
                    {
                        ["apiVersion"] = new JsonObject { ["type"] = "string" },
                        ["kind"] = new JsonObject { ["type"] = "string" },
                        ["metadata"] = new JsonObject { ["$ref"] = $"#/components/schemas/{ObjectMeta}" },
                        ["handler"] = Enum([.. Core.Manifests.ManifestValidator.RuntimeHandlers]),
                    }
                    : new JsonObject
                    {
                        ["apiVersion"] = new JsonObject { ["type"] = "string" },
                        ["kind"] = new JsonObject { ["type"] = "string" },
                        ["metadata"] = new JsonObject { ["$ref"] = $"#/components/schemas/{ObjectMeta}" },
                        ["spec"] = SpecSchema(kind),
                        ["status"] = new JsonObject { ["type"] = "object", ["x-kubernetes-preserve-unknown-fields"] = true },
                    },
                ["x-kubernetes-group-version-kind"] = new JsonArray(gvk.DeepClone()),
            };
            var reference = new JsonObject { ["$ref"] = $"#/components/schemas/{schemaName}" };
            var ok = new JsonObject { ["200"] = new JsonObject { ["description"] = "OK", ["content"] = new JsonObject { ["application/json"] = new JsonObject { ["schema"] = reference.DeepClone() } } } };
            var itemPath = $"{kind.CollectionPath}/{{name}}";
            paths[itemPath] = new JsonObject
            {
                ["parameters"] = new JsonArray(new JsonObject { ["name"] = "name", ["in"] = "path", ["required"] = true, ["schema"] = new JsonObject { ["type"] = "string" } }),
                ["get"] = new JsonObject { ["operationId"] = $"read{kind.Kind}", ["responses"] = ok.DeepClone(), ["x-kubernetes-action"] = "get", ["x-kubernetes-group-version-kind"] = gvk.DeepClone() },
                ["patch"] = new JsonObject
                {
                    ["operationId"] = $"patch{kind.Kind}",
                    ["parameters"] = new JsonArray(
                        Query("fieldValidation", "Strict, Warn or Ignore: how unknown or duplicate fields are treated (Outpost always refuses them)"),
                        Query("fieldManager", "The name of the actor making the change."),
                        Query("dryRun", "All: validate without saving.")),
                    ["requestBody"] = new JsonObject
                    {
                        ["content"] = new JsonObject
                        {
                            ["application/merge-patch+json"] = new JsonObject { ["schema"] = new JsonObject { ["type"] = "object" } },
                            ["application/apply-patch+yaml"] = new JsonObject { ["schema"] = new JsonObject { ["type"] = "object" } },
                        },
                    },
                    ["responses"] = ok.DeepClone(),
                    ["x-kubernetes-action"] = "patch",
                    ["x-kubernetes-group-version-kind"] = gvk.DeepClone(),
                },
            };
        }

        return new JsonObject
        {
            ["openapi"] = "3.0.0",
            ["info"] = new JsonObject { ["title"] = "Outpost", ["version"] = group.Length == 0 ? "v1" : $"{group}/v1" },
            ["paths"] = paths,
            ["components"] = new JsonObject { ["schemas"] = schemas },
        };
    }

    private static JsonObject Query(string name, string description) => new()
    {
        ["name"] = name,
        ["in"] = "query",
        ["description"] = description,
        ["schema"] = new JsonObject { ["type"] = "string", ["uniqueItems"] = true },
    };

    private static string SchemaName(ResourceKind kind) =>
        kind.Group.Length == 0 ? $"io.k8s.api.core.v1.{kind.Kind}" : kind.Group == "outpost.dev" ? $"dev.outpost.v1.{kind.Kind}" : $"io.k8s.api.node.v1.{kind.Kind}";

    private static JsonObject MetaSchema() => Obj(new()
    {
        ["name"] = Str(),
        ["labels"] = Map(),
        ["annotations"] = Map(),
        ["uid"] = Str(),
        ["resourceVersion"] = Str(),
        ["generation"] = new JsonObject { ["type"] = "integer", ["format"] = "int64" },
        ["creationTimestamp"] = new JsonObject { ["type"] = "string", ["format"] = "date-time" },
    });

    /// <summary>The spec schemas, the same fields the manifest validator takes.</summary>
    private static JsonObject SpecSchema(ResourceKind kind)
    {
        if (kind == ResourceKind.Application)
        {
            return Obj(new()
            {
                ["runtime"] = Str(),
                ["runtimeClassName"] = Str(),
                ["module"] = Obj(new() { ["path"] = Str(), ["digest"] = Str() }),
                ["triggers"] = Obj(new()
                {
                    ["http"] = Obj(new() { ["route"] = Str() }),
                    ["timer"] = Obj(new() { ["every"] = Str() }),
                    ["topic"] = Obj(new() { ["name"] = Str() }),
                }),
                ["env"] = Map(),
                // A name (`kv`), or a name with its list (`http-out: [temps.mesh]`).
                ["capabilities"] = new JsonObject { ["type"] = "array", ["items"] = new JsonObject { ["x-kubernetes-preserve-unknown-fields"] = true } },
                ["limits"] = Obj(new() { ["memoryMiB"] = Int(), ["timeoutMs"] = Int(), ["maxConcurrency"] = Int(), ["maxResponseBytes"] = Int() }),
                ["placement"] = Obj(new() { ["nodeSelector"] = Map() }),
                ["readinessProbe"] = Loose(),
                ["rollout"] = Loose(),
                ["expose"] = Obj(new() { ["service"] = Str(), ["port"] = Int(), ["ingress"] = Obj(new() { ["path"] = Str() }), ["clients"] = Obj(new() { ["nodeSelector"] = Map() }) }),
            });
        }

        if (kind == ResourceKind.ConfigSet || kind == ResourceKind.Secret)
        {
            return Obj(new() { ["data"] = Map(), ["placement"] = Obj(new() { ["nodeSelector"] = Map() }) });
        }

        if (kind == ResourceKind.Bucket)
        {
            return Obj(new()
            {
                ["direction"] = Enum("edge-local", "edge-to-cloud", "cloud-to-edge", "two-way"),
                ["conflictPolicy"] = Enum("lww", "cloud-wins", "edge-wins"),
                ["placement"] = Obj(new() { ["nodeSelector"] = Map() }),
            });
        }

        if (kind == ResourceKind.NetworkService)
        {
            return Obj(new()
            {
                ["selector"] = Map(),
                ["port"] = Int(),
                ["ingress"] = Obj(new() { ["path"] = Str() }),
                ["clients"] = Obj(new() { ["nodeSelector"] = Map() }),
                // Read back with the service: its address and apps.
                ["address"] = Str(),
                ["apps"] = new JsonObject { ["type"] = "array", ["items"] = Str() },
            });
        }

        if (kind == ResourceKind.AlertRule)
        {
            return Obj(new()
            {
                ["condition"] = Loose(),
                ["for"] = Str(),
                ["severity"] = Enum([.. AlertRuleSpec.Severities]),
                ["labels"] = Map(),
                ["receiver"] = Obj(new() { ["webhook"] = Obj(new() { ["url"] = Str() }) }),
            });
        }

        return Loose();
    }

    private static JsonObject Obj(Dictionary<string, JsonNode> properties) => new()
    {
        ["type"] = "object",
        ["properties"] = new JsonObject([.. properties.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))]),
    };

    private static JsonObject Str() => new() { ["type"] = "string" };

    private static JsonObject Int() => new() { ["type"] = "integer", ["format"] = "int64" };

    private static JsonObject Map() => new() { ["type"] = "object", ["additionalProperties"] = Str() };

    private static JsonObject Loose() => new() { ["type"] = "object", ["x-kubernetes-preserve-unknown-fields"] = true };

    private static JsonObject Enum(params string[] values) => new() { ["type"] = "string", ["enum"] = new JsonArray([.. values.Select(v => (JsonNode)v)]) };
}
