namespace Outpost.IntegrationTests;

/// <summary>Fixed ports for the commands that take no port 0 (`up` and the README's tour).</summary>
internal static class Ports
{
    /// <summary>
    /// The first of <paramref name="count"/> consecutive ports nothing listens on, from 20000-29999:
    /// below the range the kernel picks port 0 from, so no other test's listener lands there.
    /// </summary>
    public static int FreeRun(int count)
    {
        static bool Free(int port)
        {
            try
            {
                using var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
                probe.Start();
                return true;
            }
            catch (System.Net.Sockets.SocketException)
            {
                return false;
            }
        }

        while (true)
        {
            var first = Random.Shared.Next(20000, 30000 - count);
            if (Enumerable.Range(first, count).All(Free))
            {
                return first;
            }
        }
    }
}
