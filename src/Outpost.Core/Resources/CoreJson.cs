using System.Text.Json.Serialization;
using Outpost.Core.Metrics;

namespace Outpost.Core.Resources;

/// <summary>
/// System.Text.Json's metadata for the few typed values Outpost stores as JSON (label maps,
/// a node's inventory, a usage sample), generated at build time: no reflection, so trim- and
/// AOT-safe. Everything else is handled as JsonNode.
/// </summary>
[JsonSerializable(typeof(Dictionary<string, string>))]
[JsonSerializable(typeof(SortedDictionary<string, string>))]
[JsonSerializable(typeof(IReadOnlyDictionary<string, string>))]
[JsonSerializable(typeof(Dictionary<string, long>))]
[JsonSerializable(typeof(IReadOnlyDictionary<string, long>))]
[JsonSerializable(typeof(NodeUsageSample))]
public sealed partial class CoreJson : JsonSerializerContext;
