using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace Outpost.Agent.Mesh;

/// <summary>
/// A small authoritative DNS responder (UDP) for the mesh zone: an A query for NAME.mesh gets the
/// service's address; any other type for it an empty answer; an unknown NAME.mesh NXDOMAIN; a name
/// outside .mesh REFUSED (this is not a recursive resolver: point only the .mesh zone here, e.g. a
/// systemd-resolved or dnsmasq forward). Malformed packets are dropped.
/// </summary>
internal sealed partial class MeshDns(IPEndPoint endpoint, MeshClient mesh, ILogger logger)
{
    private const ushort TypeA = 1;
    private const ushort ClassIn = 1;
    private const uint Ttl = 5;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var socket = new UdpClient(endpoint);
        LogListening(logger, endpoint);
        while (!cancellationToken.IsCancellationRequested)
        {
            UdpReceiveResult received;
            try
            {
                received = await socket.ReceiveAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException)
            {
                continue; // an ICMP error from an earlier answer's peer
            }

            if (Answer(received.Buffer) is { } answer)
            {
                try
                {
                    await socket.SendAsync(answer, received.RemoteEndPoint, cancellationToken);
                }
                catch (SocketException)
                {
                    // The asker is gone.
                }
            }
        }
    }

    /// <summary>The response to one query packet, or null to drop it.</summary>
    internal byte[]? Answer(byte[] query)
    {
        // Header (12 bytes), then exactly one question: QNAME, QTYPE, QCLASS.
        if (query.Length < 12 || (query[2] & 0x80) != 0 || BinaryPrimitives.ReadUInt16BigEndian(query.AsSpan(4)) != 1)
        {
            return null;
        }

        var labels = new List<string>();
        var offset = 12;
        while (true)
        {
            if (offset >= query.Length)
            {
                return null;
            }

            var length = query[offset++];
            if (length == 0)
            {
                break;
            }

            if (length > 63 || offset + length > query.Length)
            {
                return null; // compression pointers have no place in a question
            }

            labels.Add(Encoding.ASCII.GetString(query, offset, length).ToLowerInvariant());
            offset += length;
        }

        if (offset + 4 > query.Length)
        {
            return null;
        }

        var type = BinaryPrimitives.ReadUInt16BigEndian(query.AsSpan(offset));
        var @class = BinaryPrimitives.ReadUInt16BigEndian(query.AsSpan(offset + 2));
        var questionEnd = offset + 4;

        int rcode;
        IPAddress? address = null;
        if (labels.Count != 2 || labels[1] != "mesh")
        {
            rcode = labels.Count >= 1 && labels[^1] == "mesh" ? 3 : 5; // NXDOMAIN inside the zone, REFUSED outside it
        }
        else if (mesh.AddressOf(labels[0]) is { } ip)
        {
            rcode = 0;
            address = type == TypeA && @class == ClassIn ? ip : null; // other types: the name exists, no record
        }
        else
        {
            rcode = 3;
        }

        var response = new byte[questionEnd + (address is null ? 0 : 16)];
        query.AsSpan(0, questionEnd).CopyTo(response);
        response[2] = (byte)(0x80 | 0x04 | (query[2] & 0x01)); // QR, AA, RD as asked
        response[3] = (byte)rcode; // RA = 0: no recursion here
        BinaryPrimitives.WriteUInt16BigEndian(response.AsSpan(6), (ushort)(address is null ? 0 : 1)); // ANCOUNT
        BinaryPrimitives.WriteUInt16BigEndian(response.AsSpan(8), 0); // NSCOUNT
        BinaryPrimitives.WriteUInt16BigEndian(response.AsSpan(10), 0); // ARCOUNT
        if (address is not null)
        {
            var answer = response.AsSpan(questionEnd);
            BinaryPrimitives.WriteUInt16BigEndian(answer, 0xC00C); // the name: a pointer to the question's
            BinaryPrimitives.WriteUInt16BigEndian(answer[2..], TypeA);
            BinaryPrimitives.WriteUInt16BigEndian(answer[4..], ClassIn);
            BinaryPrimitives.WriteUInt32BigEndian(answer[6..], Ttl);
            BinaryPrimitives.WriteUInt16BigEndian(answer[10..], 4);
            address.GetAddressBytes().CopyTo(answer[12..]);
        }

        return response;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Answering DNS for the .mesh zone on {Endpoint} (udp)")]
    private static partial void LogListening(ILogger logger, IPEndPoint endpoint);
}
