using System.Globalization;
using Outpost.Bench;

// Scenarios for bench/run.sh; each prints its figures as key=value pairs on its last line.
switch (args.FirstOrDefault())
{
    case "coldstart":
        var iterations = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 20_000;
        ColdStart.Run(TimeSpan.FromSeconds(3), iterations);
        return 0;
    case "components":
        ComponentBench.Run(args[1], TimeSpan.FromSeconds(3), args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 20_000);
        return 0;
    case "kestrel":
        await PlainKestrel.RunAsync(int.Parse(args[1], CultureInfo.InvariantCulture));
        return 0;
    case "sync":
        await SyncBench.RunAsync(args[1], args[2], int.Parse(args[3], CultureInfo.InvariantCulture), int.Parse(args[4], CultureInfo.InvariantCulture), args.Length > 5 ? args[5] : null);
        return 0;
    case "rollback":
        await RollbackBench.RunAsync(args[1], args[2], int.Parse(args[3], CultureInfo.InvariantCulture), int.Parse(args[4], CultureInfo.InvariantCulture), int.Parse(args[5], CultureInfo.InvariantCulture));
        return 0;
    case "startuptypes": // DATA_DIR OUT
        return await DiProbe.RunAsync(args[1], args[2]);
    case "layout": // SYMBOLS OUT PID:PATH...
        return CodeLayout.Run(args[1], args[2], [.. args[3..].Select(a => (int.Parse(a[..a.IndexOf(':', StringComparison.Ordinal)], CultureInfo.InvariantCulture), a[(a.IndexOf(':', StringComparison.Ordinal) + 1)..]))]);
    case "firstanswer":
        return FirstAnswer.Run(args[1], args[2], args[3..]);
    case "sink":
        await MeshBench.SinkAsync(int.Parse(args[1], CultureInfo.InvariantCulture));
        return 0;
    case "bulk":
        return await MeshBench.BulkAsync(int.Parse(args[1], CultureInfo.InvariantCulture), int.Parse(args[2], CultureInfo.InvariantCulture),
            args.Length > 3 ? double.Parse(args[3], CultureInfo.InvariantCulture) : null);
    case "tlssink":
        await MeshBench.TlsSinkAsync(int.Parse(args[1], CultureInfo.InvariantCulture));
        return 0;
    case "tlsbulk":
        return await MeshBench.TlsBulkAsync(int.Parse(args[1], CultureInfo.InvariantCulture), int.Parse(args[2], CultureInfo.InvariantCulture));
    case "hop": // LISTEN UPSTREAM tcp|tls tcp|tls
        await MeshBench.HopAsync(int.Parse(args[1], CultureInfo.InvariantCulture), int.Parse(args[2], CultureInfo.InvariantCulture), args[3] == "tls", args[4] == "tls");
        return 0;
    case "connects":
        return await MeshBench.ConnectsAsync(int.Parse(args[1], CultureInfo.InvariantCulture), double.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture));
    case "stalled":
        return await MeshBench.StalledAsync(int.Parse(args[1], CultureInfo.InvariantCulture), int.Parse(args[2], CultureInfo.InvariantCulture));
    case "resume":
        return await MeshBench.ResumeAsync(int.Parse(args[1], CultureInfo.InvariantCulture));
    case "latency":
        return await MeshBench.LatencyAsync(new Uri(args[1]), int.Parse(args[2], CultureInfo.InvariantCulture), double.Parse(args[3], CultureInfo.InvariantCulture), args.Length > 4 ? args[4] : null);
    case "hold":
        return await MeshBench.HoldAsync(System.Net.IPAddress.Parse(args[1]), int.Parse(args[2], CultureInfo.InvariantCulture), int.Parse(args[3], CultureInfo.InvariantCulture),
            int.Parse(args[4], CultureInfo.InvariantCulture), double.Parse(args[5], CultureInfo.InvariantCulture));
    case "fleet":
        return await FleetBench.RunAsync(args[1], args[2], args[3], args[4], args[5], args[6],
            int.Parse(args[7], CultureInfo.InvariantCulture), int.Parse(args[8], CultureInfo.InvariantCulture), int.Parse(args[9], CultureInfo.InvariantCulture),
            double.Parse(args[10], CultureInfo.InvariantCulture), double.Parse(args[11], CultureInfo.InvariantCulture));
    case "seednodes":
        await Outpost.IntegrationTests.Dashboard.DashboardFixture.SeedFleetAsync(args[1], int.Parse(args[2], CultureInfo.InvariantCulture));
        return 0;
    case "dashboard":
        return await DashboardBench.RunAsync(args[1], args[2], args[3], int.Parse(args[4], CultureInfo.InvariantCulture), int.Parse(args[5], CultureInfo.InvariantCulture), args[6],
            int.Parse(args[7], CultureInfo.InvariantCulture));
    case "ai":
        return AiBench.Run(args[1], args[2], args[3], int.Parse(args[4], CultureInfo.InvariantCulture));
    case "kestrel-ai":
        await AiBench.ServeAsync(int.Parse(args[1], CultureInfo.InvariantCulture), args[2]);
        return 0;
    default:
        Console.Error.WriteLine("usage: Outpost.Bench coldstart [iterations] | kestrel PORT | ai MODEL CLASSIFY_WASM READFILE_WASM ITERATIONS | kestrel-ai PORT MODEL | sync OUTPOST_DLL SAMPLES RECORDS IDLE_SECONDS [POSTGRES] | rollback OUTPOST_DLL SAMPLES AGENTS RUNS WARMUPS | firstanswer URL PROGRAM ARGS... | sink PORT | bulk PORT MB [SECONDS] | tlssink PORT | tlsbulk PORT MB | connects PORT SECONDS CONCURRENCY | stalled PORT SECONDS | resume PORT | latency URL RATE SECONDS [HEADER] | hold ADDRESS PORT COUNT CONCURRENCY SECONDS | seednodes DATA_DIR COUNT | dashboard SERVER_URL TOKEN CA SERVER_PID AGENT_PID AGENT_NODE RUNS | fleet SERVER_URL[,URL2] CONFIG JOIN_TOKEN SERVER_PID[,PID2] OUTPOST SAMPLES NODES RUNS IDLE_SECONDS RECORD_SECONDS STORM_LIMIT_SECONDS");
        return 2;
}
