using System.Text.Json.Nodes;
using Outpost.Core.Manifests;
using Outpost.Core.Resources;

namespace Outpost.Client;

/// <summary>
/// Manifests read from files and checked before anything is sent: every problem in every
/// document is reported (file, document, field), and any problem means nothing is applied.
/// </summary>
internal sealed class ManifestSet
{
    private ManifestSet(IReadOnlyList<ManifestDocument> documents) => Documents = documents;

    public IReadOnlyList<ManifestDocument> Documents { get; }

    /// <summary>
    /// Reads each -f: a FILE, or every .yaml/.yml/.json file of a DIR in name order; as kubectl,
    /// -f may repeat and one -f may list several, separated by commas. A file named twice is read once.
    /// </summary>
    public static ManifestSet Load(IEnumerable<string> paths)
    {
        var files = new List<string>();
        var errors = new List<string>();
        foreach (var path in paths.SelectMany(p => File.Exists(p) || Directory.Exists(p) ? [p] : p.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            var found = Directory.Exists(path)
                ? Directory.GetFiles(path).Where(f => f.EndsWith(".yaml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".yml", StringComparison.OrdinalIgnoreCase) || f.EndsWith(".json", StringComparison.OrdinalIgnoreCase)).Order(StringComparer.Ordinal).ToList()
                : File.Exists(path) ? [path] : null;
            if (found is null)
            {
                errors.Add($"{path}: no such file or directory");
            }
            else if (found.Count == 0)
            {
                errors.Add($"{path}: no .yaml, .yml or .json manifests in this directory");
            }
            else
            {
                files.AddRange(found.Where(f => !files.Any(seen => Path.GetFullPath(seen) == Path.GetFullPath(f))));
            }
        }

        if (errors.Count > 0)
        {
            throw new ManifestException(errors);
        }

        var documents = new List<ManifestDocument>();
        foreach (var file in files)
        {
            try
            {
                documents.AddRange(YamlManifestReader.Read(File.ReadAllText(file), file));
            }
            catch (ManifestException ex)
            {
                errors.AddRange(ex.Errors);
            }
        }

        foreach (var doc in documents)
        {
            errors.AddRange(ManifestValidator.Validate(doc.Body, allowModulePath: true).Select(e => $"{doc.Location}: {e}"));
        }

        var seen = new Dictionary<string, ManifestDocument>(StringComparer.Ordinal);
        foreach (var doc in documents)
        {
            var key = $"{doc.Body["kind"]}/{doc.Body["metadata"]?["name"]}";
            if (!seen.TryAdd(key, doc))
            {
                errors.Add($"{doc.Location}: metadata.name: duplicate: {key} is also defined in {seen[key].Location}");
            }
        }

        if (documents.Count == 0 && errors.Count == 0)
        {
            errors.Add($"{string.Join(", ", paths)}: no documents to apply");
        }

        return errors.Count > 0 ? throw new ManifestException(errors) : new ManifestSet(documents);
    }

    /// <summary>
    /// Uploads each module given by path (once per digest) and returns the documents with
    /// <c>digest</c> in place of <c>path</c>. Module problems name the file and document.
    /// </summary>
    public async Task<JsonArray> ResolveModulesAsync(ApiClient client, CancellationToken ct)
    {
        var items = new JsonArray();
        var errors = new List<string>();
        var uploaded = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var doc in Documents)
        {
            var body = (JsonObject)doc.Body.DeepClone();
            var spec = body["spec"] as JsonObject;
            // Each local path becomes the digest of what was uploaded for it (once per file per apply).
            async Task ResolveAsync(JsonObject? entry, string field, Func<string, Task<string>> upload)
            {
                if (entry?["path"] is not JsonValue pathValue)
                {
                    return;
                }

                var relative = pathValue.GetValue<string>();
                var full = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(doc.Source))!, relative));
                try
                {
                    if (!uploaded.TryGetValue(full, out var digest))
                    {
                        digest = await upload(full);
                        uploaded[full] = digest;
                    }

                    entry.Remove("path");
                    entry["digest"] = digest;
                }
                catch (Exception ex) when (ex is ManifestException or InvalidDataException or IOException || ex is ApiException { Code: 400 or 413 or 422 })
                {
                    errors.Add($"{doc.Location}: {field}.path: {(ex is ManifestException && field == "spec.module" ? "" : relative + ": ")}{ex.Message}");
                }
            }

            await ResolveAsync(spec?["module"] as JsonObject, "spec.module", full => UploadAsync(client, full, ct));
            foreach (var (i, entry) in (spec?["files"] as JsonArray ?? []).Index())
            {
                await ResolveAsync(entry as JsonObject, $"spec.files[{i}]", full => UploadFilesAsync(client, full, ct));
            }

            foreach (var (i, entry) in (spec?["models"] as JsonArray ?? []).Index())
            {
                await ResolveAsync(entry as JsonObject, $"spec.models[{i}]", full => UploadModelAsync(client, full, ct));
            }

            items.Add((JsonNode)body);
        }

        return errors.Count > 0 ? throw new ManifestException(errors) : items;
    }

    /// <summary>Packs a directory (or takes a .tar archive as it is) for spec.files, then pushes it unless the server already has its digest.</summary>
    public static async Task<string> UploadFilesAsync(ApiClient client, string path, CancellationToken ct)
    {
        byte[] bytes;
        if (Directory.Exists(path))
        {
            bytes = FilesArchive.Pack(path);
        }
        else if (File.Exists(path))
        {
            bytes = await File.ReadAllBytesAsync(path, ct);
            if (FilesArchive.Validate(bytes) is { Count: > 0 } problems)
            {
                throw new ManifestException($"'{path}' cannot be mounted: {string.Join("; ", problems)}");
            }
        }
        else
        {
            throw new ManifestException($"'{path}' does not exist (spec.files takes a directory or a .tar archive)");
        }

        return await PushAsync(client, bytes, "files", "application/x-tar", ct);
    }

    /// <summary>Checks an ONNX model locally, then pushes it unless the server already has its digest.</summary>
    public static async Task<string> UploadModelAsync(ApiClient client, string file, CancellationToken ct)
    {
        if (!File.Exists(file))
        {
            throw new ManifestException($"model file '{file}' does not exist");
        }

        var bytes = await File.ReadAllBytesAsync(file, ct);
        if (OnnxModelFile.Problem(bytes) is { } problem)
        {
            throw new ManifestException($"'{file}' is {problem}");
        }

        return await PushAsync(client, bytes, "model", "application/octet-stream", ct);
    }

    private static async Task<string> PushAsync(ApiClient client, byte[] bytes, string type, string contentType, CancellationToken ct)
    {
        var digest = Digest.Compute(bytes);
        try
        {
            await client.GetAsync($"apis/outpost.dev/v1/blobs/{digest}", ct);
            return digest;
        }
        catch (ApiException ex) when (ex.Code == 404)
        {
            var result = await client.SendBytesAsync(HttpMethod.Post, $"apis/outpost.dev/v1/blobs?type={type}", bytes, contentType, ct);
            return (string)result["digest"]!;
        }
    }

    /// <summary>Checks a module file locally, then pushes it unless the server already has its digest.</summary>
    public static async Task<string> UploadAsync(ApiClient client, string file, CancellationToken ct)
    {
        if (!File.Exists(file))
        {
            throw new ManifestException($"module file '{file}' does not exist");
        }

        var bytes = await File.ReadAllBytesAsync(file, ct);
        if (bytes.Length < 8 || !bytes.AsSpan(0, 4).SequenceEqual("\0asm"u8))
        {
            throw new ManifestException($"'{file}' is not a WebAssembly module (it does not start with the \\0asm header)");
        }

        var digest = Digest.Compute(bytes);
        try
        {
            await client.GetAsync($"apis/outpost.dev/v1/blobs/{digest}", ct);
            return digest;
        }
        catch (ApiException ex) when (ex.Code == 404)
        {
            var result = await client.PostBytesAsync("apis/outpost.dev/v1/blobs", bytes, ct);
            return (string)result["digest"]!;
        }
    }
}
