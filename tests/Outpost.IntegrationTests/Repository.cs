namespace Outpost.IntegrationTests;

/// <summary>The repository the tests were built from (README, samples, the launcher).</summary>
internal static class Repository
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Outpost.slnx")) && Directory.Exists(Path.Combine(dir.FullName, "samples", "manifests")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("the repository (Outpost.slnx) was not found above the test binaries");
    }
}
