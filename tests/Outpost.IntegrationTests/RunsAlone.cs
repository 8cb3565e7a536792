namespace Outpost.IntegrationTests;

/// <summary>
/// Every other test class is a collection of its own, and collections run in parallel (two at a
/// time, one per core: xUnit's default), since each test has its own fleet, temp dir, HOME and
/// ports from 127.0.0.1:0. A test that needs the machine to itself (fixed ports, timing, network
/// namespaces) joins this collection: it runs after the parallel ones, alone.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class RunsAlone
{
    public const string Name = "Serial";
}
