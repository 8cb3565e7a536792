using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>One node's batch of records waiting for a group commit, and how many of them were new once written.</summary>
internal sealed class RecordIngest(string node, IReadOnlyList<IngestRecord> records)
{
    public string Node { get; } = node;

    public IReadOnlyList<IngestRecord> Records { get; } = records;

    /// <summary>Set by the write that commits the batch: the records not already stored.</summary>
    public int Stored { get; set; }
}
