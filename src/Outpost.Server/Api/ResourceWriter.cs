using System.Text.Json.Nodes;
using Outpost.Core.Api;
using Outpost.Core.Manifests;
using Outpost.Core.Resources;
using Outpost.Core.Security;
using Outpost.Core.Store;

namespace Outpost.Server.Api;

/// <summary>
/// Turns API objects into store writes: validates each against its schema, checks that
/// referenced modules are on the server, and reports problems as Invalid statuses.
/// </summary>
public sealed class ResourceWriter(IControlPlaneStore store, Wasm.Hosting.WasmHost wasm, SecretBox secrets)
{
    /// <summary>Validates one object; on success returns the write, else the Status to send.</summary>
    /// <remarks><paramref name="batchRuntimeClasses"/>: RuntimeClasses written in the same apply, which an Application may name.</remarks>
    public async Task<(ResourceWrite? Write, ApiStatus? Error)> PrepareAsync(JsonObject body, WriteOp op, string? prefix, CancellationToken cancellationToken,
        IReadOnlySet<string>? batchRuntimeClasses = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        var kind = (body["kind"] as JsonValue)?.ToString() ?? "object";
        var name = ((body["metadata"] as JsonObject)?["name"] as JsonValue)?.ToString();
        var errors = ManifestValidator.Validate(body, allowModulePath: false).ToList();
        if (errors.Count == 0 && body["spec"]?["runtimeClassName"] is JsonValue classValue
            && classValue.GetValue<string>() is var className
            && batchRuntimeClasses?.Contains(className) != true
            && await store.GetAsync(ResourceKind.RuntimeClass.Kind, className, cancellationToken) is null)
        {
            errors.Add(new FieldError("spec.runtimeClassName", $"RuntimeClass \"{className}\" not found: apply one first (handler: {string.Join(", ", ManifestValidator.RuntimeHandlers)})"));
        }

        if (errors.Count == 0 && body["spec"]?["module"]?["digest"] is JsonValue digestValue)
        {
            var digest = digestValue.GetValue<string>();
            var size = await store.GetBlobSizeAsync(digest, cancellationToken);
            if (size is null)
            {
                errors.Add(new FieldError("spec.module.digest", $"module {digest} is not on the server: upload it with `outpost push FILE` or apply with a module path"));
            }
            else
            {
                // A module may only import the host functions its capabilities grant.
                var content = new byte[size.Value];
                await store.ReadBlobAsync(digest, 0, content, cancellationToken);
                var granted = ApplicationSpec.FromJson((JsonObject)body["spec"]!).Capabilities.ToHashSet(StringComparer.Ordinal);
                errors.AddRange(wasm.CheckCapabilities(content, granted).Select(p => new FieldError("spec.capabilities", p)));
            }
        }

        if (errors.Count == 0 && kind == ResourceKind.Secret.Kind)
        {
            errors.AddRange(await SealAsync(name!, (JsonObject)body["spec"]!["data"]!, cancellationToken));
        }

        if (errors.Count > 0)
        {
            return (null, ApiStatus.Invalid(kind, name, [.. errors.Select(e => new StatusCause(e.Field, e.Message))], prefix));
        }

        var metadata = (JsonObject)body["metadata"]!;
        long? expected = null;
        if (metadata["resourceVersion"] is JsonValue rv && long.TryParse(rv.ToString(), out var parsed))
        {
            expected = parsed;
        }

        return (new ResourceWrite
        {
            Op = op,
            Kind = kind,
            Name = name!,
            Labels = ResourceJson.ReadMap(metadata["labels"]),
            Annotations = ResourceJson.ReadMap(metadata["annotations"]),
            SpecJson = JsonCanonical.Serialize(kind == ResourceKind.RuntimeClass.Kind ? new JsonObject { ["handler"] = body["handler"]?.DeepClone() } : body["spec"] ?? new JsonObject()),
            ExpectedResourceVersion = op == WriteOp.Upsert ? null : expected,
        }, null);
    }

    /// <summary>
    /// Seals a Secret's values in place before they reach the store. A value that is already
    /// stored (sealed, or the same plaintext again) keeps its sealed form, so applying the same
    /// Secret twice changes nothing; <c>&lt;redacted&gt;</c> (what a read returns) keeps the stored value.
    /// </summary>
    private async Task<List<FieldError>> SealAsync(string name, JsonObject data, CancellationToken cancellationToken)
    {
        var errors = new List<FieldError>();
        var stored = (await store.GetAsync(ResourceKind.Secret.Kind, name, cancellationToken))?.Spec()["data"] as JsonObject;
        foreach (var (key, node) in data.ToList())
        {
            var value = (string)node!;
            var context = SecretBox.ContextOf(name, key);
            var current = stored?[key] is JsonValue s ? (string)s! : null;
            if (value == SecretBox.Redacted)
            {
                if (current is null)
                {
                    errors.Add(new FieldError($"spec.data.{key}", $"'{SecretBox.Redacted}' stands for the stored value, but secret \"{name}\" has no key '{key}'"));
                }
                else
                {
                    data[key] = current;
                }

                continue;
            }

            if (SecretBox.IsSealed(value))
            {
                try
                {
                    secrets.Open(value, context);
                }
                catch (System.Security.Cryptography.CryptographicException)
                {
                    errors.Add(new FieldError($"spec.data.{key}", "looks sealed but was not sealed by this server for this key; give the plain value"));
                }

                continue;
            }

            data[key] = current is not null && secrets.Open(current, context) == value ? current : secrets.Seal(value, context);
        }

        return errors;
    }

    public static ApiStatus ToStatus(StoreException ex)
    {
        ArgumentNullException.ThrowIfNull(ex);
        return ex.Error switch
        {
            StoreError.NotFound => ApiStatus.NotFound(ex.Kind, ex.Name),
            StoreError.AlreadyExists => new ApiStatus(409, StatusReasons.AlreadyExists, ex.Message, Kind: ex.Kind, Name: ex.Name),
            _ => new ApiStatus(409, StatusReasons.Conflict, ex.Message, Kind: ex.Kind, Name: ex.Name),
        };
    }
}
