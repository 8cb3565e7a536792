using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Outpost.Core.Net;

namespace Outpost.Core.Tests.Net;

/// <summary>OpenSSL is told to free an idle connection's record buffers, and the connection carries data as before.</summary>
public sealed class TlsIdleBuffersTests
{
    private const long ReleaseBuffers = 0x10; // SSL_MODE_RELEASE_BUFFERS

    [Fact]
    public async Task ReleasingBuffers_SetsOpenSslsMode_AndBothDirectionsStillCarryRecordsOfEverySize()
    {
        Assert.True(OperatingSystem.IsLinux(), "Outpost runs its servers on Linux, where SslStream is OpenSSL");
        Assert.Null(TlsIdleBuffers.Unavailable);

        await using var pair = await TlsPair.ConnectAsync();
        Assert.Equal(0, TlsIdleBuffers.Mode(pair.Server) & ReleaseBuffers);

        Assert.True(TlsIdleBuffers.Release(pair.Server));
        Assert.Equal(ReleaseBuffers, TlsIdleBuffers.Mode(pair.Server) & ReleaseBuffers);
        Assert.Equal(0, TlsIdleBuffers.Mode(pair.Client) & ReleaseBuffers); // one connection's mode, not the library's

        // Buffers freed after every record and taken again for the next: small, full and split
        // records, both ways at once.
        var random = new Random(7);
        foreach (var size in new[] { 1, 100, 16_384, 16_385, 70_000, 5 })
        {
            var up = new byte[size];
            var down = new byte[size];
            random.NextBytes(up);
            random.NextBytes(down);
            var sent = Task.WhenAll(pair.Client.WriteAsync(up).AsTask(), pair.Server.WriteAsync(down).AsTask());
            var received = await Task.WhenAll(ReadExactlyAsync(pair.Server, size), ReadExactlyAsync(pair.Client, size));
            await sent;
            Assert.Equal(up, received[0]);
            Assert.Equal(down, received[1]);
        }
    }

    private static async Task<byte[]> ReadExactlyAsync(SslStream stream, int count)
    {
        var buffer = new byte[count];
        await stream.ReadExactlyAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(30));
        return buffer;
    }

    private sealed class TlsPair(SslStream server, SslStream client, X509Certificate2 certificate) : IAsyncDisposable
    {
        public SslStream Server => server;

        public SslStream Client => client;

        public static async Task<TlsPair> ConnectAsync()
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
            using var ephemeral = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(1));
            var certificate = X509CertificateLoader.LoadPkcs12(ephemeral.Export(X509ContentType.Pkcs12), null);

            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var connecting = new TcpClient();
            var connected = connecting.ConnectAsync(IPAddress.Loopback, ((IPEndPoint)listener.LocalEndpoint).Port);
            var accepted = await listener.AcceptTcpClientAsync();
            await connected;

            var server = new SslStream(accepted.GetStream(), leaveInnerStreamOpen: false);
            var client = new SslStream(connecting.GetStream(), leaveInnerStreamOpen: false, (_, presented, _, _) => presented?.GetCertHashString() == certificate.GetCertHashString());
            await Task.WhenAll(
                server.AuthenticateAsServerAsync(certificate),
                client.AuthenticateAsClientAsync("localhost")).WaitAsync(TimeSpan.FromSeconds(30));
            return new TlsPair(server, client, certificate);
        }

        public async ValueTask DisposeAsync()
        {
            await client.DisposeAsync();
            await server.DisposeAsync();
            certificate.Dispose();
        }
    }
}
