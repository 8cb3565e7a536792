using System.Collections;
using System.Reflection;
using System.Xml.Linq;
using Outpost.Agent.Hosting;

namespace Outpost.Bench;

/// <summary>
/// Makes src/Outpost/startup-generics.rd.xml: the generic types an agent's service container
/// makes at run time while it starts (closed forms of the framework's open-generic services,
/// such as OptionsFactory&lt;KestrelServerOptions&gt;, and the arrays behind IEnumerable&lt;T&gt;
/// services). NativeAOT builds such a type at run time with its type loader, slowly (a profile of
/// the release agent's start had a fifth of its samples there); named in the rd.xml, the compiler
/// makes them ahead of time. Runs an agent on the JIT, in process, and reads the container's
/// cache of what it resolved (private fields of Microsoft.Extensions.DependencyInjection: a
/// development tool, run again when the start changes).
/// </summary>
internal static class DiProbe
{
    private const BindingFlags Private = BindingFlags.NonPublic | BindingFlags.Instance;

    public static async Task<int> RunAsync(string dataDir, string output)
    {
        // A join token, unused: an agent with neither token nor identity stops itself as it starts.
        await using var agent = OutpostAgent.Create(new AgentOptions { ServerUrl = "https://127.0.0.1:1", JoinToken = "probe", NodeName = "probe", DataDir = dataDir, Gateway = "127.0.0.1:0" });
        await agent.StartAsync(CancellationToken.None);
        await Task.Delay(TimeSpan.FromSeconds(3)); // the background services start too
        var app = typeof(OutpostAgent).GetField("_app", Private)!.GetValue(agent)!;
        var provider = app.GetType().GetProperty("Services")!.GetValue(app)!;
        var factory = provider.GetType().GetProperty("CallSiteFactory", Private)!.GetValue(provider)!;
        var cache = (IDictionary)factory.GetType().GetField("_callSiteCache", Private)!.GetValue(factory)!;
        var types = new SortedSet<Type>(Comparer<Type>.Create((a, b) => string.CompareOrdinal(a.FullName, b.FullName)));
        foreach (DictionaryEntry entry in cache)
        {
            var identifier = entry.Key.GetType().GetProperty("ServiceIdentifier")!.GetValue(entry.Key)!;
            var service = (Type)identifier.GetType().GetProperty("ServiceType")!.GetValue(identifier)!;
            if (service.IsConstructedGenericType && service.GetGenericTypeDefinition() == typeof(IEnumerable<>))
            {
                types.Add(service.GetGenericArguments()[0].MakeArrayType());
            }
            else if (entry.Value?.GetType().GetProperty("ImplementationType")?.GetValue(entry.Value) is Type { IsConstructedGenericType: true } implementation)
            {
                types.Add(implementation);
            }
        }

        await agent.StopAsync(CancellationToken.None);
        XNamespace ns = "http://schemas.microsoft.com/netfx/2013/01/metadata";
        var application = new XElement(ns + "Application");
        foreach (var group in types.GroupBy(t => (t.IsArray ? t.GetElementType()! : t).Assembly.GetName().Name).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            application.Add(new XElement(ns + "Assembly", new XAttribute("Name", group.Key!),
                group.Select(t => new XElement(ns + "Type", new XAttribute("Name", Name(t)), new XAttribute("Dynamic", "Required All")))));
        }

        var document = new XDocument(
            new XComment(" Made by `dotnet bench/Outpost.Bench/bin/Release/net10.0/Outpost.Bench.dll startuptypes DIR src/Outpost/startup-generics.rd.xml` (bench/Outpost.Bench/DiProbe.cs): generic types an agent's service container makes while it starts, compiled ahead of time instead. "),
            new XElement(ns + "Directives", application));
        document.Save(output);
        Console.WriteLine($"{types.Count} types written to {output}");
        return 0;
    }

    /// <summary>A type's name as rd.xml takes it: generic arguments by full name and assembly.</summary>
    private static string Name(Type type) =>
        type.IsArray ? Name(type.GetElementType()!) + "[]"
        : type.IsConstructedGenericType
            ? $"{type.GetGenericTypeDefinition().FullName}[{string.Join(",", type.GetGenericArguments().Select(a => $"[{Name(a)},{a.Assembly.GetName().Name}]"))}]"
            : type.FullName!;
}
