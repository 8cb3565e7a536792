using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Outpost.Core.Resources;

namespace Outpost.Core.Manifests;

/// <summary>
/// Checks a resource document against its kind's schema. Strict, as kubectl's field
/// validation is: unknown fields are errors, so a typo never silently does nothing.
/// </summary>
public static partial class ManifestValidator
{
    /// <summary>Capabilities an app may declare; host functions check them (see the Wasm runtime).</summary>
    public static readonly IReadOnlySet<string> KnownCapabilities =
        new HashSet<string>(StringComparer.Ordinal) { "log", "config", "secrets", "kv", "publish", "clock", "http-out", "nn" };

    private static readonly string[] TopLevelFields = ["apiVersion", "kind", "metadata", "spec", "status"];
    private static readonly string[] MetadataFields = ["name", "labels", "annotations", "uid", "resourceVersion", "generation", "creationTimestamp"];
    private static readonly string[] AppSpecFields = ["runtime", "runtimeClassName", "module", "triggers", "env", "capabilities", "limits", "placement", "readinessProbe", "rollout", "expose",
        "image", "imageDigest", "command", "args", "port", "restartPolicy", "files", "volumes", "models"];

    /// <summary>The fields only a container app has.</summary>
    private static readonly string[] ContainerFields = ["image", "imageDigest", "command", "args", "port", "restartPolicy"];

    /// <summary>RuntimeClass handlers Outpost runs: its Wasm runtime (Wasmtime) under the names people use for Wasm runtimes, and runc for containers.</summary>
    public static readonly IReadOnlyList<string> RuntimeHandlers = ["wasmedge", "wasmtime", "wasm", ContainerHandler];

    /// <summary>The RuntimeClass handler that runs an app as a container (spec.image) with runc.</summary>
    public const string ContainerHandler = "runc";
    private static readonly string[] LimitFields = ["memoryMiB", "timeoutMs", "maxConcurrency", "maxResponseBytes", "cpuMillis"];

    /// <summary>Validates one document. When <paramref name="allowModulePath"/> is false (the server), a module must be a digest.</summary>
    public static IReadOnlyList<FieldError> Validate(JsonObject doc, bool allowModulePath)
    {
        ArgumentNullException.ThrowIfNull(doc);
        var errors = new List<FieldError>();
        UnknownFields(doc, "", (string?)(doc["kind"] as JsonValue)?.ToString() == ResourceKind.RuntimeClass.Kind ? [.. TopLevelFields.Where(f => f != "spec"), "handler"] : TopLevelFields, errors);

        var kindName = RequireString(doc, "kind", "kind", errors);
        var apiVersion = RequireString(doc, "apiVersion", "apiVersion", errors);
        ResourceKind? kind = null;
        if (kindName is not null)
        {
            kind = ResourceKind.Applicable.FirstOrDefault(k => k.Kind == kindName);
            if (kind is null)
            {
                errors.Add(new("kind", $"unknown kind '{kindName}'; expected one of: {string.Join(", ", ResourceKind.Applicable.Select(k => k.Kind))}"));
            }
            else if (apiVersion is not null && apiVersion != kind.ApiVersion)
            {
                errors.Add(new("apiVersion", $"'{apiVersion}' does not serve kind {kind.Kind}; expected '{kind.ApiVersion}'"));
            }
        }

        ValidateMetadata(doc["metadata"], errors);

        if (kind == ResourceKind.Application)
        {
            ValidateApplicationSpec(doc["spec"], allowModulePath, errors);
        }
        else if (kind == ResourceKind.ConfigSet || kind == ResourceKind.Secret)
        {
            ValidateConfigSetSpec(doc["spec"], errors);
        }
        else if (kind == ResourceKind.Bucket)
        {
            ValidateBucketSpec(doc["spec"], errors);
        }
        else if (kind == ResourceKind.AlertRule)
        {
            AlertRuleSpec.Read(doc["spec"], errors);
        }
        else if (kind == ResourceKind.NetworkService)
        {
            if ((doc["metadata"] as JsonObject)?["name"] is JsonValue name && name.GetValueKind() == JsonValueKind.String && !IsDnsLabel(name.GetValue<string>()))
            {
                errors.Add(new("metadata.name", $"'{name.GetValue<string>()}' is not a service name: use at most 63 lowercase letters, digits and '-' (it becomes NAME.mesh)"));
            }

            ValidateNetworkServiceSpec(doc["spec"], errors);
        }
        else if (kind == ResourceKind.RuntimeClass)
        {
            var handler = RequireString(doc, "handler", "handler", errors);
            if (handler == "process")
            {
                errors.Add(new("handler", "handler 'process' (native processes) is not available: Outpost runs WebAssembly (wasmedge, wasmtime or wasm) and OCI containers (runc)"));
            }
            else if (handler is not null && !RuntimeHandlers.Contains(handler))
            {
                errors.Add(new("handler", $"unknown handler '{handler}'; Outpost runs WebAssembly and containers: use one of {string.Join(", ", RuntimeHandlers)}"));
            }
        }

        return errors;
    }

    private static void ValidateMetadata(JsonNode? node, List<FieldError> errors)
    {
        if (node is null)
        {
            errors.Add(new("metadata", "required field is missing"));
            return;
        }

        if (node is not JsonObject metadata)
        {
            errors.Add(new("metadata", $"expected an object, got {Describe(node)}"));
            return;
        }

        UnknownFields(metadata, "metadata", MetadataFields, errors);
        var name = RequireString(metadata, "name", "metadata.name", errors);
        if (name is not null && !IsDnsLabel(name))
        {
            errors.Add(new("metadata.name", $"'{name}' is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"));
        }

        ValidateStringMap(metadata["labels"], "metadata.labels", errors, validateLabels: true);
        ValidateStringMap(metadata["annotations"], "metadata.annotations", errors, validateLabels: false, MaxAnnotationValue);
    }

    private static void ValidateApplicationSpec(JsonNode? node, bool allowModulePath, List<FieldError> errors)
    {
        if (node is null)
        {
            errors.Add(new("spec", "required field is missing"));
            return;
        }

        if (node is not JsonObject spec)
        {
            errors.Add(new("spec", $"expected an object, got {Describe(node)}"));
            return;
        }

        UnknownFields(spec, "spec", AppSpecFields, errors);

        var runtime = spec["runtime"] is { } runtimeNode ? AsString(runtimeNode, "spec.runtime", errors) : null;
        if (runtime is not null and not ("wasm" or ApplicationSpec.ContainerRuntime))
        {
            errors.Add(new("spec.runtime", $"unsupported runtime '{runtime}'; expected 'wasm' or '{ApplicationSpec.ContainerRuntime}'"));
        }

        if (spec["runtimeClassName"] is { } classNode && AsString(classNode, "spec.runtimeClassName", errors) is { } className && !IsDnsLabel(className))
        {
            errors.Add(new("spec.runtimeClassName", $"'{className}' is not a RuntimeClass name"));
        }

        // A container app names an image; a Wasm app a module. spec.runtime, if given, says which it must be.
        var container = runtime == ApplicationSpec.ContainerRuntime || (runtime is null && spec["image"] is not null);
        if (container)
        {
            if (spec["module"] is not null)
            {
                errors.Add(new("spec.module", "a container app runs spec.image, not a module: remove spec.module (or make it a Wasm app without spec.image)"));
            }

            ValidateContainer(spec, errors);
        }
        else
        {
            foreach (var field in ContainerFields.Where(spec.ContainsKey))
            {
                errors.Add(new($"spec.{field}", $"only container apps have spec.{field}: set spec.runtime: {ApplicationSpec.ContainerRuntime} (or a RuntimeClass with handler runc) and spec.image"));
            }

            ValidateModule(spec["module"], allowModulePath, errors);
        }

        ValidateStorage(spec, container, allowModulePath, errors);
        ValidateTriggers(spec["triggers"], errors);

        if (spec["readinessProbe"] is { } probeNode)
        {
            ValidateReadinessProbe(probeNode, spec["triggers"]?["http"]?["route"] is JsonValue r && r.GetValueKind() == JsonValueKind.String ? r.GetValue<string>() : null, errors);
        }

        RolloutSpec.Read(spec["rollout"], errors);
        ValidateStringMap(spec["env"], "spec.env", errors, validateLabels: false, MaxEnvValue);

        if (spec["capabilities"] is { } capsNode)
        {
            if (capsNode is not JsonArray caps)
            {
                errors.Add(new("spec.capabilities", $"expected a list, got {Describe(capsNode)}"));
            }
            else
            {
                for (var i = 0; i < caps.Count; i++)
                {
                    if (caps[i] is JsonObject withList)
                    {
                        ValidateHttpOut(withList, $"spec.capabilities[{i}]", errors);
                        continue;
                    }

                    if (caps[i] is JsonValue v && v.GetValueKind() == JsonValueKind.String && v.GetValue<string>() == ApplicationSpec.HttpOutCapability)
                    {
                        errors.Add(new($"spec.capabilities[{i}]", "http-out needs its allow-list of hosts: write it as `- http-out: [temps.mesh, api.example.com]`"));
                        continue;
                    }

                    var cap = AsString(caps[i], $"spec.capabilities[{i}]", errors);
                    if (cap is not null && !KnownCapabilities.Contains(cap))
                    {
                        errors.Add(new($"spec.capabilities[{i}]", $"unknown capability '{cap}'; expected one of: {string.Join(", ", KnownCapabilities.Order(StringComparer.Ordinal))}"));
                    }
                }
            }
        }

        if (spec["limits"] is { } limitsNode)
        {
            if (limitsNode is not JsonObject limits)
            {
                errors.Add(new("spec.limits", $"expected an object, got {Describe(limitsNode)}"));
            }
            else
            {
                UnknownFields(limits, "spec.limits", LimitFields, errors);
                foreach (var field in LimitFields)
                {
                    if (limits[field] is { } value && (value is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !int.TryParse(v.ToJsonString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) || n <= 0))
                    {
                        errors.Add(new($"spec.limits.{field}", $"expected a positive integer, got {Describe(value)}"));
                    }
                }
            }
        }

        ValidatePlacement(spec["placement"], errors);
        ValidateExpose(spec["expose"], errors);
    }

    private static readonly string[] ExposeFields = ["service", "port", "ingress", "clients"];

    /// <summary>The most hosts one http-out allow-list may name.</summary>
    public const int MaxHttpOutHosts = 64;

    /// <summary><c>{http-out: [HOST, ...]}</c>: each a lowercase host name (NAME.mesh for a mesh service), no scheme, port or path.</summary>
    private static void ValidateHttpOut(JsonObject capability, string field, List<FieldError> errors)
    {
        if (capability.Count != 1 || capability[ApplicationSpec.HttpOutCapability] is not { } listNode)
        {
            errors.Add(new(field, $"a capability with a list must be `http-out: [HOST, ...]`, got {{{string.Join(", ", capability.Select(p => p.Key))}}}"));
            return;
        }

        if (listNode is not JsonArray hosts || hosts.Count == 0)
        {
            errors.Add(new($"{field}.http-out", $"expected a non-empty list of host names, got {Describe(listNode)}"));
            return;
        }

        if (hosts.Count > MaxHttpOutHosts)
        {
            errors.Add(new($"{field}.http-out", $"at most {MaxHttpOutHosts} hosts, got {hosts.Count}"));
        }

        for (var j = 0; j < hosts.Count; j++)
        {
            if (AsString(hosts[j], $"{field}.http-out[{j}]", errors) is { } host && !IsHostName(host))
            {
                errors.Add(new($"{field}.http-out[{j}]", $"'{host}' is not a host name: write a lowercase name such as temps.mesh or api.example.com (no scheme, port or path)"));
            }
        }
    }

    /// <summary>A lowercase DNS name of labels joined by dots (at most 253 characters), e.g. api.example.com; NAME.mesh for a mesh service; not an IP address.</summary>
    public static bool IsHostName(string value)
    {
        if (value is not { Length: > 0 and <= 253 })
        {
            return false;
        }

        var labels = value.Split('.');
        if (!labels.All(IsDnsLabel) || labels[^1].All(char.IsAsciiDigit))
        {
            return false;
        }

        return labels[^1] != "mesh" || labels.Length == 2;
    }

    private static readonly string[] NetworkServiceFields = ["selector", "port", "ingress", "clients"];

    /// <summary>
    /// A NetworkService: <c>selector</c> (the labels of the apps whose instances are its endpoints),
    /// <c>port</c>, <c>ingress.path</c> and <c>clients.nodeSelector</c> as in <c>spec.expose</c>.
    /// </summary>
    private static void ValidateNetworkServiceSpec(JsonNode? node, List<FieldError> errors)
    {
        if (node is not JsonObject spec)
        {
            errors.Add(new("spec", node is null ? "required field is missing: selector (the labels of the apps that serve it) and port" : $"expected an object, got {Describe(node)}"));
            return;
        }

        UnknownFields(spec, "spec", NetworkServiceFields, errors);
        if (spec["selector"] is not JsonObject { Count: > 0 })
        {
            errors.Add(new("spec.selector", "required: the labels of the apps whose Ready instances are the service's endpoints, e.g. {app: temps}"));
        }
        else
        {
            ValidateStringMap(spec["selector"], "spec.selector", errors, validateLabels: true);
        }

        // The rest reads as an app's spec.expose does, under spec.
        var asExpose = new JsonObject { ["service"] = "x" };
        foreach (var field in (string[])["port", "ingress", "clients"])
        {
            if (spec[field] is { } value)
            {
                asExpose[field] = value.DeepClone();
            }
        }

        var exposeErrors = new List<FieldError>();
        ValidateExpose(asExpose, exposeErrors);
        errors.AddRange(exposeErrors.Select(e => e with { Field = "spec" + e.Field["spec.expose".Length..] }));
    }

    private static void ValidateExpose(JsonNode? node, List<FieldError> errors)
    {
        if (node is null)
        {
            return;
        }

        if (node is not JsonObject expose)
        {
            errors.Add(new("spec.expose", $"expected an object with service and port, got {Describe(node)}"));
            return;
        }

        UnknownFields(expose, "spec.expose", ExposeFields, errors);
        if (expose["service"] is not { } serviceNode)
        {
            errors.Add(new("spec.expose.service", "required field is missing: the network service this app is an endpoint of"));
        }
        else if (AsString(serviceNode, "spec.expose.service", errors) is { } service && !IsDnsLabel(service))
        {
            errors.Add(new("spec.expose.service", $"'{service}' is not a service name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (it becomes {service}.mesh)"));
        }

        if (expose["port"] is { } port && (port is not JsonValue v || v.GetValueKind() != JsonValueKind.Number
            || !int.TryParse(v.ToJsonString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n) || n is < 1 or > 65535))
        {
            errors.Add(new("spec.expose.port", $"expected a port number from 1 to 65535, got {Describe(port)}"));
        }

        if (expose["clients"] is { } clientsNode)
        {
            if (clientsNode is not JsonObject clients || clients["nodeSelector"] is null)
            {
                errors.Add(new("spec.expose.clients", $"expected an object with nodeSelector (the labels of nodes whose programs may call the service), got {Describe(clientsNode)}"));
            }
            else
            {
                UnknownFields(clients, "spec.expose.clients", ["nodeSelector"], errors);
                ValidateStringMap(clients["nodeSelector"], "spec.expose.clients.nodeSelector", errors, validateLabels: true);
            }
        }

        if (expose["ingress"] is { } ingressNode)
        {
            if (ingressNode is not JsonObject ingress)
            {
                errors.Add(new("spec.expose.ingress", $"expected an object with path, got {Describe(ingressNode)}"));
                return;
            }

            UnknownFields(ingress, "spec.expose.ingress", IngressFields, errors);
            if (ingress["path"] is not { } pathNode)
            {
                errors.Add(new("spec.expose.ingress.path", "required field is missing: the public path, e.g. /shop"));
            }
            else if (AsString(pathNode, "spec.expose.ingress.path", errors) is { } path && !IsIngressPath(path))
            {
                errors.Add(new("spec.expose.ingress.path", $"'{path}' is not an ingress path: '/' and segments of letters, digits, '-', '_', '.' or '~', no trailing '/', no '.' or '..' segment (e.g. /shop)"));
            }
        }
    }

    private static readonly string[] IngressFields = ["path"];

    /// <summary>An absolute path of plain segments (no empty, '.' or '..' one), or "/".</summary>
    public static bool IsIngressPath(string path) =>
        path == "/" || (path.Length <= 256 && path.StartsWith('/') && path[1..].Split('/').All(s => s.Length > 0 && s is not "." and not ".." && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '~')));

    private static void ValidateTriggers(JsonNode? node, List<FieldError> errors)
    {
        if (node is null)
        {
            return;
        }

        if (node is not JsonObject triggers)
        {
            errors.Add(new("spec.triggers", $"expected an object, got {Describe(node)}"));
            return;
        }

        UnknownFields(triggers, "spec.triggers", ["http", "timer", "topic"], errors);
        if (Section(triggers, "http", ["route"], errors) is { } http)
        {
            var route = RequireString(http, "route", "spec.triggers.http.route", errors);
            if (route is not null && route.Length > MaxRouteLength)
            {
                errors.Add(new("spec.triggers.http.route", $"'{Clip(route)}' is {route.Length} characters long: at most {MaxRouteLength} (a node's gateway refuses longer request lines)"));
            }
            else if (route is not null && !IsRoute(route))
            {
                errors.Add(new("spec.triggers.http.route", $"'{route}' is not a route prefix: it must start with '/' and must not start with '/_outpost'"));
            }
        }

        if (Section(triggers, "timer", ["every"], errors) is { } timer)
        {
            var every = RequireString(timer, "every", "spec.triggers.timer.every", errors);
            if (every is not null && (!Durations.TryParse(every, out var interval) || interval < TimeSpan.FromMilliseconds(100)))
            {
                errors.Add(new("spec.triggers.timer.every", $"'{every}' is not an interval of at least 100ms: use e.g. 500ms, 5s, 1m, 1h"));
            }
        }

        if (Section(triggers, "topic", ["name"], errors) is { } topic)
        {
            var name = RequireString(topic, "name", "spec.triggers.topic.name", errors);
            if (name is not null && !IsTopic(name))
            {
                errors.Add(new("spec.triggers.topic.name", $"'{name}' is not a topic name: 1 to 128 letters, digits, '.', '_' or '-'"));
            }
        }
    }

    private static JsonObject? Section(JsonObject parent, string key, string[] fields, List<FieldError> errors)
    {
        if (parent[key] is not { } node)
        {
            return null;
        }

        if (node is not JsonObject section)
        {
            errors.Add(new($"spec.triggers.{key}", $"expected an object, got {Describe(node)}"));
            return null;
        }

        UnknownFields(section, $"spec.triggers.{key}", fields, errors);
        return section;
    }

    /// <summary>Topic names as the gateway's /_outpost/topics/{topic} accepts them.</summary>
    public static bool IsTopic(string name) =>
        name.Length is > 0 and <= 128 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');

    private static void ValidateConfigSetSpec(JsonNode? node, List<FieldError> errors)
    {
        if (node is not JsonObject spec)
        {
            errors.Add(new("spec", node is null ? "required field is missing" : $"expected an object, got {Describe(node)}"));
            return;
        }

        UnknownFields(spec, "spec", ["data", "placement"], errors);
        if (spec["data"] is null)
        {
            errors.Add(new("spec.data", "required field is missing: a map of keys to string values"));
        }

        ValidateStringMap(spec["data"], "spec.data", errors, validateLabels: false, MaxDataValue);
        if (spec["data"] is JsonObject data)
        {
            foreach (var (key, _) in data)
            {
                if (key.Length is 0 or > 253 || key.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
                {
                    errors.Add(new($"spec.data.{key}", "keys are 1 to 253 letters, digits, '-', '_' or '.'"));
                }
            }
        }

        ValidatePlacement(spec["placement"], errors);
    }

    /// <summary>Bucket directions and conflict policies as manifests spell them.</summary>
    public static readonly IReadOnlyList<string> BucketDirections = ["edge-local", "edge-to-cloud", "cloud-to-edge", "two-way"];

    public static readonly IReadOnlyList<string> ConflictPolicies = ["lww", "cloud-wins", "edge-wins"];

    private static void ValidateBucketSpec(JsonNode? node, List<FieldError> errors)
    {
        if (node is null)
        {
            return; // every field has a default: an edge-local, last-writer-wins bucket on every node
        }

        if (node is not JsonObject spec)
        {
            errors.Add(new("spec", $"expected an object, got {Describe(node)}"));
            return;
        }

        UnknownFields(spec, "spec", ["direction", "conflictPolicy", "placement"], errors);
        if (spec["direction"] is { } direction && AsString(direction, "spec.direction", errors) is { } d && !BucketDirections.Contains(d))
        {
            errors.Add(new("spec.direction", $"unknown direction '{d}'; expected one of: {string.Join(", ", BucketDirections)}"));
        }

        if (spec["conflictPolicy"] is { } policy && AsString(policy, "spec.conflictPolicy", errors) is { } p && !ConflictPolicies.Contains(p))
        {
            errors.Add(new("spec.conflictPolicy", $"unknown conflict policy '{p}'; expected one of: {string.Join(", ", ConflictPolicies)}"));
        }

        ValidatePlacement(spec["placement"], errors);
    }

    private static void ValidatePlacement(JsonNode? placementNode, List<FieldError> errors)
    {
        if (placementNode is null)
        {
            return;
        }

        if (placementNode is not JsonObject placement)
        {
            errors.Add(new("spec.placement", $"expected an object, got {Describe(placementNode)}"));
            return;
        }

        UnknownFields(placement, "spec.placement", ["nodeSelector"], errors);
        ValidateStringMap(placement["nodeSelector"], "spec.placement.nodeSelector", errors, validateLabels: true);
    }

    private static readonly string[] RestartPolicies = ["Always", "OnFailure", "Never"];
    private static readonly string[] WasmOnlyTriggers = ["timer", "topic"];
    private static readonly string[] ProcessFields = ["command", "args"];

    /// <summary>A container app: an image reference, the process to run, its port, restart policy; no Wasm-only fields.</summary>
    private static void ValidateContainer(JsonObject spec, List<FieldError> errors)
    {
        if (spec["image"] is not { } imageNode)
        {
            errors.Add(new("spec.image", "required for a container app: an image pushed to the server's registry, as NAME:TAG or NAME@sha256:..."));
        }
        else if (AsString(imageNode, "spec.image", errors) is { } image && ImageReference.Parse(image) is { Error: { } problem })
        {
            errors.Add(new("spec.image", problem));
        }

        if (spec["imageDigest"] is { } digestNode && AsString(digestNode, "spec.imageDigest", errors) is { } digest && !Digest.IsValid(digest))
        {
            errors.Add(new("spec.imageDigest", $"'{digest}' is not a digest: expected 'sha256:' followed by 64 lowercase hex digits"));
        }

        foreach (var field in ProcessFields)
        {
            if (spec[field] is { } listNode && (listNode is not JsonArray list || list.Any(item => item is not JsonValue v || v.GetValueKind() != JsonValueKind.String)))
            {
                errors.Add(new($"spec.{field}", $"expected a list of strings, got {Describe(listNode)}"));
            }
        }

        if (spec["port"] is { } portNode && (portNode is not JsonValue pv || pv.GetValueKind() != JsonValueKind.Number
            || !int.TryParse(pv.ToJsonString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535))
        {
            errors.Add(new("spec.port", $"expected a TCP port (1-65535) the container listens on, got {Describe(portNode)}"));
        }

        if (spec["restartPolicy"] is { } policyNode && AsString(policyNode, "spec.restartPolicy", errors) is { } policy && !RestartPolicies.Contains(policy))
        {
            errors.Add(new("spec.restartPolicy", $"unknown restart policy '{policy}'; expected one of {string.Join(", ", RestartPolicies)}"));
        }

        if (spec["capabilities"] is not null)
        {
            errors.Add(new("spec.capabilities", "capabilities grant Wasm host functions; a container app has none: remove spec.capabilities"));
        }

        if (spec["triggers"] is JsonObject triggers)
        {
            foreach (var trigger in WasmOnlyTriggers.Where(triggers.ContainsKey))
            {
                errors.Add(new($"spec.triggers.{trigger}", $"container apps take http triggers only; a {trigger} trigger runs Wasm apps"));
            }
        }
    }

    private static void ValidateModule(JsonNode? node, bool allowModulePath, List<FieldError> errors)
    {
        if (node is null)
        {
            errors.Add(new("spec.module", "required field is missing: give 'path' (a local .wasm file) or 'digest' (sha256:...)"));
            return;
        }

        if (node is not JsonObject module)
        {
            errors.Add(new("spec.module", $"expected an object with 'path' or 'digest', got {Describe(node)}"));
            return;
        }

        // kind and world are the server's: it writes what the module is when the app is applied.
        UnknownFields(module, "spec.module", ["path", "digest", "kind", "world"], errors);
        var hasPath = module["path"] is not null;
        var hasDigest = module["digest"] is not null;
        if (hasPath && hasDigest)
        {
            errors.Add(new("spec.module", "give either 'path' or 'digest', not both"));
        }
        else if (!hasPath && !hasDigest)
        {
            errors.Add(new("spec.module", "required: 'path' (a local .wasm file) or 'digest' (sha256:...)"));
        }

        if (hasPath)
        {
            var path = AsString(module["path"], "spec.module.path", errors);
            if (path is not null && !allowModulePath)
            {
                errors.Add(new("spec.module.path", $"the server cannot read the local file '{path}': use `outpost apply -f` (which uploads it), or `outpost push FILE` and set spec.module.digest"));
            }
        }

        if (hasDigest)
        {
            var digest = AsString(module["digest"], "spec.module.digest", errors);
            if (digest is not null && !Digest.IsValid(digest))
            {
                errors.Add(new("spec.module.digest", $"'{digest}' is not a digest: expected 'sha256:' followed by 64 lowercase hex digits"));
            }
        }
    }

    private static void ValidateReadinessProbe(JsonNode node, string? route, List<FieldError> errors)
    {
        if (node is not JsonObject probe)
        {
            errors.Add(new("spec.readinessProbe", $"expected an object with path and expectStatus, got {Describe(node)}"));
            return;
        }

        UnknownFields(probe, "spec.readinessProbe", ["path", "expectStatus"], errors);
        if (route is null)
        {
            errors.Add(new("spec.readinessProbe", "a readiness probe is an HTTP request: the app needs spec.triggers.http"));
        }

        var path = probe["path"] is { } p ? AsString(p, "spec.readinessProbe.path", errors) : null;
        if (path is not null && path.Length > MaxRouteLength)
        {
            errors.Add(new("spec.readinessProbe.path", $"'{Clip(path)}' is {path.Length} characters long: at most {MaxRouteLength}"));
            return;
        }

        if (path is null && probe["path"] is null)
        {
            errors.Add(new("spec.readinessProbe.path", "required field is missing: the path to GET, under the app's route"));
        }
        else if (path is not null && route is not null
            && !(route == "/" || path == route || path.StartsWith(route.EndsWith('/') ? route : route + "/", StringComparison.Ordinal)))
        {
            errors.Add(new("spec.readinessProbe.path", $"'{path}' is not under the app's route '{route}'"));
        }

        if (probe["expectStatus"] is { } statusNode
            && (statusNode is not JsonValue sv || sv.GetValueKind() != JsonValueKind.Number
                || !int.TryParse(sv.ToJsonString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var status) || status is < 100 or > 599))
        {
            errors.Add(new("spec.readinessProbe.expectStatus", "expected an HTTP status from 100 to 599"));
        }
    }

    /// <summary>Checks a map of labels (for flags and API bodies that carry labels outside a manifest).</summary>
    public static IReadOnlyList<FieldError> ValidateLabels(JsonNode? node, string field)
    {
        var errors = new List<FieldError>();
        ValidateStringMap(node, field, errors, validateLabels: true);
        return errors;
    }

    /// <summary>Longest route: far under the 8 KiB request line a gateway accepts, far over any real prefix.</summary>
    public const int MaxRouteLength = 1024;

    /// <summary>Longest map key (env names, config keys, annotation keys), as Kubernetes' qualified names with a prefix.</summary>
    public const int MaxKeyLength = 253;

    /// <summary>Longest env value: an app's environment, not a place for files (ship those as config).</summary>
    public const int MaxEnvValue = 32 * 1024;

    /// <summary>Longest annotation value.</summary>
    public const int MaxAnnotationValue = 64 * 1024;

    /// <summary>Longest ConfigSet or Secret value: as a Kubernetes ConfigMap's whole data.</summary>
    public const int MaxDataValue = 1024 * 1024;

    /// <summary>A long input shown in a message: its start and its length, not all of it.</summary>
    private static string Clip(string text) => text.Length <= 40 ? text : $"{text[..32]}…";

    private static void ValidateStringMap(JsonNode? node, string field, List<FieldError> errors, bool validateLabels, int maxValue = 63)
    {
        if (node is null)
        {
            return;
        }

        if (node is not JsonObject map)
        {
            errors.Add(new(field, $"expected a map of strings, got {Describe(node)}"));
            return;
        }

        foreach (var (key, value) in map)
        {
            if (value is not JsonValue v || v.GetValueKind() != JsonValueKind.String)
            {
                errors.Add(new($"{field}.{key}", $"expected a string, got {Describe(value)} (quote it in YAML)"));
                continue;
            }

            if (validateLabels && (!LabelKeyPattern().IsMatch(key) || !LabelValuePattern().IsMatch(v.GetValue<string>())))
            {
                errors.Add(new($"{field}.{Clip(key)}", "label keys and values are at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit (keys may have a 'prefix/')"));
            }
            else if (!validateLabels && key.Length > MaxKeyLength)
            {
                errors.Add(new($"{field}.{Clip(key)}", $"the key is {key.Length} characters long: at most {MaxKeyLength}"));
            }
            else if (!validateLabels && v.GetValue<string>().Length > maxValue)
            {
                errors.Add(new($"{field}.{key}", $"the value is {v.GetValue<string>().Length} characters long: at most {maxValue}"));
            }
        }
    }

    private static void UnknownFields(JsonObject obj, string path, string[] known, List<FieldError> errors)
    {
        foreach (var (key, _) in obj)
        {
            if (!known.Contains(key, StringComparer.Ordinal))
            {
                var field = path.Length == 0 ? key : $"{path}.{key}";
                errors.Add(new(field, $"unknown field; expected one of: {string.Join(", ", known)}"));
            }
        }
    }

    private static string? RequireString(JsonObject obj, string key, string field, List<FieldError> errors)
    {
        var node = obj[key];
        if (node is null)
        {
            errors.Add(new(field, "required field is missing"));
            return null;
        }

        return AsString(node, field, errors);
    }

    private static string? AsString(JsonNode? node, string field, List<FieldError> errors)
    {
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String)
        {
            return v.GetValue<string>();
        }

        errors.Add(new(field, $"expected a string, got {Describe(node)}"));
        return null;
    }

    internal static string Describe(JsonNode? node) => node switch
    {
        null => "null",
        JsonObject => "an object",
        JsonArray => "a list",
        JsonValue v => v.GetValueKind() switch
        {
            JsonValueKind.String => $"the string \"{v.GetValue<string>()}\"",
            JsonValueKind.Number => $"the number {v.ToJsonString()}",
            JsonValueKind.True or JsonValueKind.False => $"the boolean {v.ToJsonString()}",
            _ => v.ToJsonString(),
        },
        _ => node.ToJsonString(),
    };

    public static bool IsDnsLabel(string name) => name.Length <= 63 && DnsLabelPattern().IsMatch(name);

    private static bool IsRoute(string route) =>
        route.StartsWith('/') && !route.StartsWith("/_outpost", StringComparison.Ordinal) && !route.Contains("..", StringComparison.Ordinal);

    [GeneratedRegex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
    private static partial Regex DnsLabelPattern();

    [GeneratedRegex(@"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")]
    private static partial Regex LabelKeyPattern();

    [GeneratedRegex(@"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")]
    private static partial Regex LabelValuePattern();
}
