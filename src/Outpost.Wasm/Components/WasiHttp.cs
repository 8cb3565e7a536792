using System.Text;
using Outpost.Wasm.Components.Http;
using Outpost.Wasm.Host;

namespace Outpost.Wasm.Components;

/// <summary>
/// The host side of wasi:http@0.2 (types and outgoing-handler): what a wasi:http/proxy component
/// imports. Wasmtime's own wasi-http cannot serve here (its C API makes no incoming-request), so
/// Outpost implements the interfaces over the run's resource table.
/// </summary>
internal static unsafe class WasiHttp
{
    public const string Version = "0.2.12";

    private static readonly string[] Methods = ["get", "head", "post", "put", "delete", "connect", "options", "trace", "patch"];

    public static List<WitInterface> Interfaces()
    {
        var all = new List<WitInterface>();
        var types = new WitInterface("wasi:http", "types", Version)
            .Resource("fields", ResourceType.Fields)
            .Resource("incoming-request", ResourceType.IncomingRequest)
            .Resource("outgoing-request", ResourceType.OutgoingRequest)
            .Resource("request-options", ResourceType.RequestOptions)
            .Resource("response-outparam", ResourceType.ResponseOutparam)
            .Resource("incoming-response", ResourceType.IncomingResponse)
            .Resource("incoming-body", ResourceType.IncomingBody)
            .Resource("future-trailers", ResourceType.FutureTrailers)
            .Resource("outgoing-response", ResourceType.OutgoingResponse)
            .Resource("outgoing-body", ResourceType.OutgoingBody)
            .Resource("future-incoming-response", ResourceType.FutureIncomingResponse)
            .Func("http-error-code", (ref HostCall c) =>
            {
                var error = c.Resource<IoError>(0, ResourceType.IoError);
                if (error.HttpErrorCase is null)
                {
                    Values.None(c.Result());
                    return;
                }

                Val code = default;
                ErrorCode(&code, error.HttpErrorCase, error.Message);
                Values.Some(c.Result(), &code);
            });
        DefineFields(types);
        DefineIncoming(types);
        DefineOutgoing(types);
        DefineClient(types);
        all.Add(types);

        all.Add(new WitInterface("wasi:http", "outgoing-handler", Version)
            .Func("handle", Send));
    
        return all;
    }

    private static Fields FieldsArg(ref HostCall c) => c.Resource<Fields>(0, ResourceType.Fields);

    private static void DefineFields(WitInterface types) => types
        .Constructor("fields", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.Fields, new Fields()))
        .Static("fields", "from-list", (ref HostCall c) =>
        {
            var fields = new Fields();
            var list = c.Raw(0);
            for (var i = 0; i < (int)list->Vec.Size; i++)
            {
                var (name, value) = Entry(list->Vec.Data + i);
                if (fields.Check(name, value) is { } problem)
                {
                    HeaderError(c.Result(), problem);
                    return;
                }

                fields.Entries.Add(new(name, value));
            }

            Val made = default;
            c.NewResource(&made, ResourceType.Fields, fields);
            Values.Ok(c.Result(), &made);
        })
        .Method("fields", "get", (ref HostCall c) =>
        {
            var values = FieldsArg(ref c).Get(c.String(1)).ToList();
            Values.List(c.Result(), values.Count, static (slot, i, state) => Values.Bytes(slot, ((List<byte[]>)state!)[i]), values);
        })
        .Method("fields", "has", (ref HostCall c) => Values.Bool(c.Result(), FieldsArg(ref c).Get(c.String(1)).Any()))
        .Method("fields", "set", (ref HostCall c) =>
        {
            var fields = FieldsArg(ref c);
            var name = c.String(1);
            var list = c.Raw(2);
            var values = new List<byte[]>();
            for (var i = 0; i < (int)list->Vec.Size; i++)
            {
                var value = Values.ToBytes((list->Vec.Data + i)->Vec);
                if (fields.Check(name, value) is { } problem)
                {
                    HeaderError(c.Result(), problem);
                    return;
                }

                values.Add(value);
            }

            if (fields.Check(name, []) is { } refused)
            {
                HeaderError(c.Result(), refused);
                return;
            }

            fields.Remove(name);
            fields.Entries.AddRange(values.Select(v => new KeyValuePair<string, byte[]>(name, v)));
            Values.Ok(c.Result());
        })
        .Method("fields", "delete", (ref HostCall c) =>
        {
            var fields = FieldsArg(ref c);
            var name = c.String(1);
            if (fields.Check(name, []) is { } problem)
            {
                HeaderError(c.Result(), problem);
                return;
            }

            fields.Remove(name);
            Values.Ok(c.Result());
        })
        .Method("fields", "append", (ref HostCall c) =>
        {
            var fields = FieldsArg(ref c);
            var name = c.String(1);
            var value = c.Bytes(2);
            if (fields.Check(name, value) is { } problem)
            {
                HeaderError(c.Result(), problem);
                return;
            }

            fields.Entries.Add(new(name, value));
            Values.Ok(c.Result());
        })
        .Method("fields", "entries", (ref HostCall c) =>
        {
            var entries = FieldsArg(ref c).Entries;
            Values.List(c.Result(), entries.Count, static (slot, i, state) =>
                Values.Tuple(slot, 2, static (item, j, entry) =>
                {
                    var (name, value) = (KeyValuePair<string, byte[]>)entry!;
                    if (j == 0)
                    {
                        Values.String(item, name);
                    }
                    else
                    {
                        Values.Bytes(item, value);
                    }
                }, ((List<KeyValuePair<string, byte[]>>)state!)[i]), entries);
        })
        .Method("fields", "clone", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.Fields, FieldsArg(ref c).Clone()));

    private static (string Name, byte[] Value) Entry(Val* tuple)
    {
        if (tuple->Kind != Val.Tuple || tuple->Vec.Size != 2)
        {
            throw new GuestTrapException("expected a tuple<field-name, field-value>");
        }

        return (Values.StringOf(tuple->Vec.Data), Values.ToBytes(tuple->Vec.Data[1].Vec));
    }

    private static void HeaderError(Val* slot, string problem)
    {
        Val error = default;
        Values.Variant(&error, problem);
        Values.Err(slot, &error);
    }

    private static IncomingRequest RequestArg(ref HostCall c) => c.Resource<IncomingRequest>(0, ResourceType.IncomingRequest);

    private static void DefineIncoming(WitInterface types) => types
        .Method("incoming-request", "method", (ref HostCall c) => Method(c.Result(), RequestArg(ref c).Method))
        .Method("incoming-request", "path-with-query", (ref HostCall c) => Values.OptionalString(c.Result(), RequestArg(ref c).PathWithQuery))
        .Method("incoming-request", "scheme", (ref HostCall c) =>
        {
            Val scheme = default;
            Scheme(&scheme, RequestArg(ref c).Scheme);
            Values.Some(c.Result(), &scheme);
        })
        .Method("incoming-request", "authority", (ref HostCall c) => Values.OptionalString(c.Result(), RequestArg(ref c).Authority))
        .Method("incoming-request", "headers", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.Fields, RequestArg(ref c).Headers))
        .Method("incoming-request", "consume", (ref HostCall c) =>
        {
            var request = RequestArg(ref c);
            if (request.Consumed)
            {
                Values.Err(c.Result());
                return;
            }

            request.Consumed = true;
            Val body = default;
            c.NewResource(&body, ResourceType.IncomingBody, new IncomingBody(request.Body));
            Values.Ok(c.Result(), &body);
        })
        .Method("incoming-body", "stream", (ref HostCall c) =>
        {
            var body = c.Resource<IncomingBody>(0, ResourceType.IncomingBody);
            if (body.StreamTaken)
            {
                Values.Err(c.Result());
                return;
            }

            body.StreamTaken = true;
            Val stream = default;
            c.NewResource(&stream, ResourceType.InputStream, new InputStream(body.Bytes));
            Values.Ok(c.Result(), &stream);
        })
        .Static("incoming-body", "finish", (ref HostCall c) =>
        {
            c.Take<IncomingBody>(0, ResourceType.IncomingBody);
            c.NewResource(c.Result(), ResourceType.FutureTrailers, new FutureTrailers());
        })
        .Method("future-trailers", "subscribe", (ref HostCall c) =>
        {
            c.Resource<FutureTrailers>(0, ResourceType.FutureTrailers);
            c.NewResource(c.Result(), ResourceType.Pollable, Pollable.Ready());
        })
        .Method("future-trailers", "get", (ref HostCall c) =>
        {
            var future = c.Resource<FutureTrailers>(0, ResourceType.FutureTrailers);
            Val outer = default;
            if (future.Taken)
            {
                Values.Err(&outer);
            }
            else
            {
                future.Taken = true;
                Val none = default;
                Values.None(&none);
                Val inner = default;
                Values.Ok(&inner, &none);
                Values.Ok(&outer, &inner);
            }

            Values.Some(c.Result(), &outer);
        });

    private static OutgoingResponse ResponseArg(ref HostCall c) => c.Resource<OutgoingResponse>(0, ResourceType.OutgoingResponse);

    private static void DefineOutgoing(WitInterface types) => types
        .Constructor("outgoing-response", (ref HostCall c) =>
        {
            var headers = c.Take<Fields>(0, ResourceType.Fields);
            headers.Immutable = true;
            c.NewResource(c.Result(), ResourceType.OutgoingResponse, new OutgoingResponse(headers, c.Run.MaxResponseBytes));
        })
        .Method("outgoing-response", "status-code", (ref HostCall c) => Values.U16(c.Result(), ResponseArg(ref c).Status))
        .Method("outgoing-response", "set-status-code", (ref HostCall c) =>
        {
            var response = ResponseArg(ref c);
            var status = c.U16(1);
            if (status is < 100 or > 599)
            {
                Values.Err(c.Result());
                return;
            }

            response.Status = status;
            Values.Ok(c.Result());
        })
        .Method("outgoing-response", "headers", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.Fields, ResponseArg(ref c).Headers))
        .Method("outgoing-response", "body", (ref HostCall c) =>
        {
            var response = ResponseArg(ref c);
            if (response.BodyTaken)
            {
                Values.Err(c.Result());
                return;
            }

            response.BodyTaken = true;
            Val body = default;
            c.NewResource(&body, ResourceType.OutgoingBody, response.Body);
            Values.Ok(c.Result(), &body);
        })
        .Method("outgoing-body", "write", (ref HostCall c) =>
        {
            var body = c.Resource<OutgoingBody>(0, ResourceType.OutgoingBody);
            if (body.StreamTaken)
            {
                Values.Err(c.Result());
                return;
            }

            body.StreamTaken = true;
            Val stream = default;
            c.NewResource(&stream, ResourceType.OutputStream, new OutputStream(body.Target));
            Values.Ok(c.Result(), &stream);
        })
        .Static("outgoing-body", "finish", (ref HostCall c) =>
        {
            var body = c.Take<OutgoingBody>(0, ResourceType.OutgoingBody);
            if (c.Option(1) != null)
            {
                c.ResourceIn<Fields>(c.Option(1), ResourceType.Fields, take: true); // trailers: accepted, not passed on
            }

            body.Finished = true;
            Values.Ok(c.Result());
        })
        .Static("response-outparam", "set", (ref HostCall c) =>
        {
            c.Take<ResponseOutparam>(0, ResourceType.ResponseOutparam);
            var result = c.Raw(1);
            if (result->Kind != Val.Result)
            {
                throw new GuestTrapException("response-outparam.set takes a result");
            }

            if (result->Byte != 0)
            {
                c.Run.Response.Response = c.ResourceIn<OutgoingResponse>(result->ResultPayload, ResourceType.OutgoingResponse, take: true);
            }
            else
            {
                c.Run.Response.Error = result->ResultPayload is null ? "internal-error" : Values.CaseOf(result->ResultPayload);
            }
        });

    private static OutgoingRequest OutgoingArg(ref HostCall c) => c.Resource<OutgoingRequest>(0, ResourceType.OutgoingRequest);

    private static RequestOptions OptionsArg(ref HostCall c) => c.Resource<RequestOptions>(0, ResourceType.RequestOptions);

    private static void DefineClient(WitInterface types) => types
        .Constructor("outgoing-request", (ref HostCall c) =>
        {
            var headers = c.Take<Fields>(0, ResourceType.Fields);
            headers.Immutable = true;
            c.NewResource(c.Result(), ResourceType.OutgoingRequest, new OutgoingRequest(headers));
        })
        .Method("outgoing-request", "body", (ref HostCall c) =>
        {
            var request = OutgoingArg(ref c);
            if (request.BodyTaken)
            {
                Values.Err(c.Result());
                return;
            }

            request.BodyTaken = true;
            Val body = default;
            c.NewResource(&body, ResourceType.OutgoingBody, request.Body);
            Values.Ok(c.Result(), &body);
        })
        .Method("outgoing-request", "method", (ref HostCall c) => Method(c.Result(), OutgoingArg(ref c).Method))
        .Method("outgoing-request", "set-method", (ref HostCall c) =>
        {
            var request = OutgoingArg(ref c);
            var method = c.Raw(1);
            var name = Values.CaseOf(method);
            var text = name == "other" ? Values.StringOf(Values.Payload(method)) : name.ToUpperInvariant();
            if (text.Length == 0 || !text.All(Fields.IsTokenChar))
            {
                Values.Err(c.Result());
                return;
            }

            request.Method = text;
            Values.Ok(c.Result());
        })
        .Method("outgoing-request", "path-with-query", (ref HostCall c) => Values.OptionalString(c.Result(), OutgoingArg(ref c).PathWithQuery))
        .Method("outgoing-request", "set-path-with-query", (ref HostCall c) =>
        {
            OutgoingArg(ref c).PathWithQuery = c.Option(1) != null ? Values.StringOf(c.Option(1)) : null;
            Values.Ok(c.Result());
        })
        .Method("outgoing-request", "scheme", (ref HostCall c) =>
        {
            if (OutgoingArg(ref c).Scheme is not { } scheme)
            {
                Values.None(c.Result());
                return;
            }

            Val value = default;
            Scheme(&value, scheme);
            Values.Some(c.Result(), &value);
        })
        .Method("outgoing-request", "set-scheme", (ref HostCall c) =>
        {
            var request = OutgoingArg(ref c);
            var scheme = c.Option(1);
            if (scheme == null)
            {
                request.Scheme = null;
            }
            else
            {
                var name = Values.CaseOf(scheme);
                request.Scheme = name switch
                {
                    "HTTP" => "http",
                    "HTTPS" => "https",
                    _ => Values.StringOf(Values.Payload(scheme)),
                };
            }

            Values.Ok(c.Result());
        })
        .Method("outgoing-request", "authority", (ref HostCall c) => Values.OptionalString(c.Result(), OutgoingArg(ref c).Authority))
        .Method("outgoing-request", "set-authority", (ref HostCall c) =>
        {
            OutgoingArg(ref c).Authority = c.Option(1) != null ? Values.StringOf(c.Option(1)) : null;
            Values.Ok(c.Result());
        })
        .Method("outgoing-request", "headers", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.Fields, OutgoingArg(ref c).Headers))
        .Constructor("request-options", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.RequestOptions, new RequestOptions()))
        .Method("request-options", "connect-timeout", (ref HostCall c) => OptionalDuration(c.Result(), OptionsArg(ref c).ConnectTimeout))
        .Method("request-options", "set-connect-timeout", (ref HostCall c) =>
        {
            OptionsArg(ref c).ConnectTimeout = c.Option(1) != null ? c.Option(1)->UInt64 : null;
            Values.Ok(c.Result());
        })
        .Method("request-options", "first-byte-timeout", (ref HostCall c) => OptionalDuration(c.Result(), OptionsArg(ref c).FirstByteTimeout))
        .Method("request-options", "set-first-byte-timeout", (ref HostCall c) =>
        {
            OptionsArg(ref c).FirstByteTimeout = c.Option(1) != null ? c.Option(1)->UInt64 : null;
            Values.Ok(c.Result());
        })
        .Method("request-options", "between-bytes-timeout", (ref HostCall c) => OptionalDuration(c.Result(), OptionsArg(ref c).BetweenBytesTimeout))
        .Method("request-options", "set-between-bytes-timeout", (ref HostCall c) =>
        {
            OptionsArg(ref c).BetweenBytesTimeout = c.Option(1) != null ? c.Option(1)->UInt64 : null;
            Values.Ok(c.Result());
        })
        .Method("future-incoming-response", "subscribe", (ref HostCall c) =>
        {
            var future = c.Resource<FutureIncomingResponse>(0, ResourceType.FutureIncomingResponse);
            future.Resolve(); // the request goes out now; the pollable is then ready
            c.NewResource(c.Result(), ResourceType.Pollable, Pollable.Ready());
        })
        .Method("future-incoming-response", "get", (ref HostCall c) =>
        {
            var future = c.Resource<FutureIncomingResponse>(0, ResourceType.FutureIncomingResponse);
            Val outer = default;
            if (future.Taken)
            {
                Values.Err(&outer);
            }
            else
            {
                future.Taken = true;
                var (response, errorCase, message) = future.Resolve();
                Val inner = default;
                if (response is not null)
                {
                    Val made = default;
                    c.NewResource(&made, ResourceType.IncomingResponse, response);
                    Values.Ok(&inner, &made);
                }
                else
                {
                    Val code = default;
                    ErrorCode(&code, errorCase!, message);
                    Values.Err(&inner, &code);
                }

                Values.Ok(&outer, &inner);
            }

            Values.Some(c.Result(), &outer);
        })
        .Method("incoming-response", "status", (ref HostCall c) => Values.U16(c.Result(), c.Resource<IncomingResponse>(0, ResourceType.IncomingResponse).Status))
        .Method("incoming-response", "headers", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.Fields, c.Resource<IncomingResponse>(0, ResourceType.IncomingResponse).Headers))
        .Method("incoming-response", "consume", (ref HostCall c) =>
        {
            var response = c.Resource<IncomingResponse>(0, ResourceType.IncomingResponse);
            if (response.Consumed)
            {
                Values.Err(c.Result());
                return;
            }

            response.Consumed = true;
            Val body = default;
            c.NewResource(&body, ResourceType.IncomingBody, new IncomingBody(response.Body));
            Values.Ok(c.Result(), &body);
        });

    /// <summary>
    /// outgoing-handler.handle: an outbound request, to a host on the app's http-out allow-list
    /// only (as for core modules); anything else is HTTP-request-denied, with the reason in the app's log.
    /// </summary>
    private static void Send(ref HostCall c)
    {
        var request = c.Take<OutgoingRequest>(0, ResourceType.OutgoingRequest);
        var options = c.Option(1) != null ? c.ResourceIn<RequestOptions>(c.Option(1), ResourceType.RequestOptions, take: true) : null;
        var run = c.Run;
        var future = new FutureIncomingResponse(() => Fetch(run, request, options));
        Val made = default;
        c.NewResource(&made, ResourceType.FutureIncomingResponse, future);
        Values.Ok(c.Result(), &made);
    }

    private static (IncomingResponse?, string?, string?) Fetch(ComponentRun run, OutgoingRequest request, RequestOptions? options)
    {
        var url = $"{request.Scheme ?? "https"}://{request.Authority}{request.PathWithQuery ?? "/"}";
        var grant = run.Grant;
        if (grant is null || !grant.Capabilities.Contains("http-out"))
        {
            return Denied(run, request.Method, url, "the app does not have capability http-out");
        }

        var headers = new StringBuilder();
        foreach (var (name, value) in request.Headers.AsText())
        {
            headers.Append(name).Append(": ").Append(value).Append('\n');
        }

        var body = ((RequestBody)request.Body.Target).Written.Span;
        var parsed = HttpOut.Parse(request.Method, url, headers.ToString(), body, grant.HttpOut, out var refusal);
        if (parsed is null)
        {
            return Denied(run, request.Method, url, refusal!);
        }

        var timeout = run.TimeLeft();
        if (options?.FirstByteTimeout is { } firstByte)
        {
            timeout = TimeSpan.FromTicks(Math.Min(timeout.Ticks, (long)(firstByte / 100)));
        }

        try
        {
            var response = grant.Services.HttpRequest(grant.App, parsed, timeout);
            var fields = new Fields { Immutable = true };
            foreach (var (name, value) in response.Headers)
            {
                fields.Entries.Add(new(name.ToLowerInvariant(), Encoding.Latin1.GetBytes(value)));
            }

            return (new IncomingResponse((ushort)response.Status, fields, response.Body), null, null);
        }
        catch (HttpOutException e)
        {
            grant.Services.Log(grant.App, grant.Revision, 2, $"http-out {request.Method} {url}: {e.Message}");
            return (null, "internal-error", e.Message);
        }
    }

    private static (IncomingResponse?, string?, string?) Denied(ComponentRun run, string method, string url, string why)
    {
        if (run.Grant is { } grant)
        {
            grant.Services.Log(grant.App, grant.Revision, 2, $"http-out {method} {url}: {why}");
        }

        run.Notes.Add($"http-out {method} {url} refused: {why}");
        return (null, "HTTP-request-denied", why);
    }

    /// <summary>An error-code value: its case, with internal-error's message when it has one.</summary>
    private static void ErrorCode(Val* slot, string errorCase, string? message)
    {
        if (errorCase != "internal-error")
        {
            Values.Variant(slot, errorCase);
            return;
        }

        Val text = default;
        Val option = default;
        if (message is null)
        {
            Values.None(&option);
        }
        else
        {
            Values.String(&text, message);
            Values.Some(&option, &text);
        }

        Values.Variant(slot, errorCase, &option);
    }

    private static void Method(Val* slot, string method)
    {
        var lower = method.ToLowerInvariant();
        if (Array.IndexOf(Methods, lower) >= 0)
        {
            Values.Variant(slot, lower);
            return;
        }

        Val other = default;
        Values.String(&other, method);
        Values.Variant(slot, "other", &other);
    }

    private static void Scheme(Val* slot, string scheme)
    {
        switch (scheme)
        {
            case "http":
                Values.Variant(slot, "HTTP");
                break;
            case "https":
                Values.Variant(slot, "HTTPS");
                break;
            default:
                Val other = default;
                Values.String(&other, scheme);
                Values.Variant(slot, "other", &other);
                break;
        }
    }

    private static void OptionalDuration(Val* slot, ulong? value)
    {
        if (value is not { } d)
        {
            Values.None(slot);
            return;
        }

        Val duration = default;
        Values.U64(&duration, d);
        Values.Some(slot, &duration);
    }
}
