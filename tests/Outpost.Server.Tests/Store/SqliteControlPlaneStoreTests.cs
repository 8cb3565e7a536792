using Outpost.Core.Store;
using Outpost.Server.Store;

namespace Outpost.Server.Tests.Store;

public sealed class SqliteControlPlaneStoreTests : ControlPlaneStoreConformanceTests, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-store-").FullName;

    protected override Task<IControlPlaneStore> CreateStoreAsync() =>
        Task.FromResult<IControlPlaneStore>(new SqliteControlPlaneStore(Path.Combine(_dir, "outpost.db"), Time));

    protected override IControlPlaneStore CreateSecondStore() => new SqliteControlPlaneStore(Path.Combine(_dir, "outpost.db"), Time);

    [Fact]
    public async Task Reopen_KeepsDataAndRevision()
    {
        var path = Path.Combine(_dir, "reopen.db");
        await using (var first = new SqliteControlPlaneStore(path, Time))
        {
            await first.InitializeAsync(CancellationToken.None);
            await first.WriteAsync([new ResourceWrite { Op = WriteOp.Create, Kind = "Application", Name = "a" }], CancellationToken.None);
        }

        await using var second = new SqliteControlPlaneStore(path, Time);
        await second.InitializeAsync(CancellationToken.None);
        Assert.Equal(1, await second.GetRevisionAsync(CancellationToken.None));
        Assert.NotNull(await second.GetAsync("Application", "a", CancellationToken.None));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
