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
    /// <remarks>
    /// <paramref name="batchRuntimeClasses"/>: RuntimeClasses written in the same apply, which an Application may name.
    /// <paramref name="batch"/>: every object of the same apply, whose Applications replace the stored ones of their names
    /// when routes are checked for conflicts.
    /// </remarks>
    public async Task<(ResourceWrite? Write, ApiStatus? Error)> PrepareAsync(JsonObject body, WriteOp op, string? prefix, CancellationToken cancellationToken,
        IReadOnlySet<string>? batchRuntimeClasses = null, IReadOnlyList<JsonObject>? batch = null)
    {
        ArgumentNullException.ThrowIfNull(body);
        var kind = (body["kind"] as JsonValue)?.ToString() ?? "object";
        var name = ((body["metadata"] as JsonObject)?["name"] as JsonValue)?.ToString();
        var errors = ManifestValidator.Validate(body, allowModulePath: false).ToList();
        if (errors.Count == 0 && body["spec"]?["runtimeClassName"] is JsonValue classValue && classValue.GetValue<string>() is var className)
        {
            var handler = batchRuntimeClasses?.Contains(className) == true
                ? batch?.FirstOrDefault(o => (o["kind"] as JsonValue)?.ToString() == ResourceKind.RuntimeClass.Kind && (o["metadata"]?["name"] as JsonValue)?.ToString() == className)?["handler"]?.ToString()
                : await store.GetAsync(ResourceKind.RuntimeClass.Kind, className, cancellationToken) is { } runtimeClass ? (string?)runtimeClass.Spec()["handler"] : null;
            var container = ApplicationSpec.FromJson((JsonObject)body["spec"]!).IsContainer;
            if (handler is null && batchRuntimeClasses?.Contains(className) != true)
            {
                errors.Add(new FieldError("spec.runtimeClassName", $"RuntimeClass \"{className}\" not found: apply one first (handler: {string.Join(", ", ManifestValidator.RuntimeHandlers)})"));
            }
            else if (handler == ManifestValidator.ContainerHandler && !container)
            {
                errors.Add(new FieldError("spec.image", $"RuntimeClass \"{className}\" runs containers (handler runc): give spec.image instead of a module"));
            }
            else if (handler is not null && handler != ManifestValidator.ContainerHandler && container)
            {
                errors.Add(new FieldError("spec.runtimeClassName", $"RuntimeClass \"{className}\" runs WebAssembly (handler {handler}); a container app (spec.image) needs one whose handler is runc"));
            }
        }

        if (errors.Count == 0 && kind == ResourceKind.Application.Kind && body["spec"]?["image"] is JsonValue imageValue)
        {
            // The tag is resolved now: the revision names the image's bytes, and a later push to the tag is a new revision only when applied.
            var reference = ImageReference.Parse(imageValue.GetValue<string>());
            var digest = reference.Digest ?? await store.GetImageTagAsync(reference.Repository, reference.Tag!, cancellationToken);
            if (digest is null)
            {
                errors.Add(new FieldError("spec.image", $"image {reference.Repository}:{reference.Tag} is not in the server's registry: push it first (skopeo copy ... docker://SERVER/{reference.Repository}:{reference.Tag}, or outpost push)"));
            }
            else if (await store.GetBlobSizeAsync(digest, cancellationToken) is null)
            {
                errors.Add(new FieldError("spec.image", $"image manifest {digest} is not in the server's registry: push the image first"));
            }
            else
            {
                body["spec"]!["imageDigest"] = digest;
            }
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
                var spec = ApplicationSpec.FromJson((JsonObject)body["spec"]!);
                var granted = spec.Capabilities.ToHashSet(StringComparer.Ordinal);
                errors.AddRange(wasm.CheckCapabilities(content, granted).Select(p => new FieldError("spec.capabilities", p)));
                // What the module is, for `outpost get apps` and kubectl: a core module, or a component and its world.
                if (wasm.Describe(content) is var (moduleKind, world))
                {
                    body["spec"]!["module"]!["kind"] = moduleKind;
                    body["spec"]!["module"]!["world"] = world;
                    errors.AddRange(ComponentFits(world, spec));
                }
            }
        }

        foreach (var (field, what) in new[] { ("files", "files"), ("models", "model") })
        {
            if (errors.Count == 0 && kind == ResourceKind.Application.Kind && body["spec"]?[field] is JsonArray entries)
            {
                for (var i = 0; i < entries.Count; i++)
                {
                    if (entries[i]?["digest"] is JsonValue digest && await store.GetBlobSizeAsync(digest.GetValue<string>(), cancellationToken) is null)
                    {
                        errors.Add(new FieldError($"spec.{field}[{i}].digest", $"{what} {digest.GetValue<string>()} is not on the server: apply with a local path (`outpost apply -f` uploads it)"));
                    }
                }
            }
        }

        if (errors.Count == 0 && kind == ResourceKind.Application.Kind && await ConflictAsync(name!, (JsonObject)body["spec"]!, batch, cancellationToken) is { } conflict)
        {
            errors.Add(conflict);
        }

        if (errors.Count == 0 && kind == ResourceKind.NetworkService.Kind && await ServicePortConflictAsync(name!, (JsonObject)body["spec"]!, cancellationToken) is { } portConflict)
        {
            errors.Add(portConflict);
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

    /// <summary>A NetworkService on another port than the apps that already expose it: refused, naming one.</summary>
    private async Task<FieldError?> ServicePortConflictAsync(string name, JsonObject spec, CancellationToken cancellationToken)
    {
        var port = NetworkServiceSpec.FromJson(spec).Port;
        var other = (await store.ListAsync(ResourceKind.Application.Kind, cancellationToken)).Items
            .Select(a => (a.Name, Spec: ApplicationSpec.FromJson(a.Spec())))
            .Where(a => a.Spec.Expose is { } e && e.Service == name && e.Port != port)
            .OrderBy(a => a.Name, StringComparer.Ordinal)
            .FirstOrDefault();
        return other.Name is null ? null : new FieldError("spec.port",
            $"app '{other.Name}' exposes service '{name}' on port {other.Spec.Expose!.Port}; a service has one port: use {other.Spec.Expose.Port}, or change the app's spec.expose.port");
    }

    /// <summary>
    /// Another app that answers the same route on a node this one could run on (the agent would
    /// serve only one of them), or that exposes the same service on another port: the apply is
    /// refused, naming it, instead of failing on the nodes.
    /// </summary>
    private async Task<FieldError?> ConflictAsync(string name, JsonObject spec, IReadOnlyList<JsonObject>? batch, CancellationToken cancellationToken)
    {
        var mine = ApplicationSpec.FromJson(spec);
        if (mine.Http is null && mine.Expose is null)
        {
            return null;
        }

        var others = new Dictionary<string, ApplicationSpec>(StringComparer.Ordinal);
        foreach (var stored in (await store.ListAsync(ResourceKind.Application.Kind, cancellationToken)).Items)
        {
            others[stored.Name] = ApplicationSpec.FromJson(stored.Spec());
        }

        foreach (var item in batch ?? [])
        {
            if ((string?)(item["kind"] as JsonValue)?.ToString() == ResourceKind.Application.Kind
                && (item["metadata"]?["name"] as JsonValue)?.ToString() is { } other
                && item["spec"] is JsonObject otherSpec
                && ManifestValidator.Validate(item, allowModulePath: false).Count == 0)
            {
                others[other] = ApplicationSpec.FromJson(otherSpec); // what this apply makes of it, not what is stored
            }
        }

        if (mine.Expose is { } expose && await store.GetAsync(ResourceKind.NetworkService.Kind, expose.Service, cancellationToken) is { } declared
            && NetworkServiceSpec.FromJson(declared.Spec()).Port is var port && port != expose.Port)
        {
            return new FieldError("spec.expose.port", $"service '{expose.Service}' is declared by its NetworkService on port {port}; a service has one port: use {port}");
        }

        var exposed = others.Where(o => o.Key != name && mine.ExposeConflictsWith(o.Value)).OrderBy(o => o.Key, StringComparer.Ordinal).FirstOrDefault();
        if (exposed.Key is not null && exposed.Value.Expose is { } theirs)
        {
            return new FieldError("spec.expose.port",
                $"service '{theirs.Service}' is already exposed on port {theirs.Port} by app '{exposed.Key}'; a service has one port: use {theirs.Port}, or another service name");
        }

        var ingress = others.Where(o => o.Key != name && mine.IngressConflictsWith(o.Value)).OrderBy(o => o.Key, StringComparer.Ordinal).FirstOrDefault();
        if (ingress.Key is not null && ingress.Value.Expose is { Ingress: { } path } taken)
        {
            return new FieldError("spec.expose.ingress.path", taken.Service == mine.Expose!.Service
                ? $"service '{taken.Service}' is already at ingress path {path} (app '{ingress.Key}'); a service has one path: use {path}"
                : $"ingress path {path} already serves service '{taken.Service}' (app '{ingress.Key}'); a path serves one service: choose another");
        }

        var rival = others.Where(o => o.Key != name && mine.RouteConflictsWith(o.Value)).Select(o => o.Key).Order(StringComparer.Ordinal).FirstOrDefault();
        return rival is null ? null : new FieldError("spec.triggers.http.route",
            $"route {mine.Http!.Route} is already served by app '{rival}' on nodes both apps can run on; a node serves a route for one app only: "
            + "choose another route, or placement.nodeSelector values that keep the two apps on different nodes");
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

    /// <summary>A wasi:http/proxy component serves HTTP only; a wasi:cli/command component runs for triggers only.</summary>
    private static IEnumerable<FieldError> ComponentFits(string world, ApplicationSpec spec)
    {
        if (world.StartsWith("wasi:http/proxy@", StringComparison.Ordinal) && (spec.TimerEvery is not null || spec.Topic is not null))
        {
            yield return new FieldError("spec.triggers", $"the module is a {world} component, which serves HTTP only: timer and topic triggers run wasi:cli/command components");
        }

        if (world.StartsWith("wasi:cli/command@", StringComparison.Ordinal) && spec.Http is not null)
        {
            yield return new FieldError("spec.triggers.http", $"the module is a {world} component, which runs for timers and topics only: serving HTTP needs a wasi:http/proxy component");
        }
    }
}
