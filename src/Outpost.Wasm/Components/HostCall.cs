using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Outpost.Wasm.Components;

/// <summary>A host function of a WIT interface: reads its arguments from a call and writes its results.</summary>
internal delegate void HostFunction(ref HostCall call);

/// <summary>
/// One call from a guest into a host function: the run it belongs to (the store's data), its
/// arguments and its results as Wasmtime's dynamic values. Readers check kinds and resource types
/// and throw <see cref="GuestTrapException"/> on anything else, which traps the guest rather than
/// the host: a guest can send nothing that makes the host misbehave.
/// </summary>
internal readonly unsafe ref struct HostCall
{
    private readonly nint _context;
    private readonly Val* _args;
    private readonly int _argCount;
    private readonly Val* _results;
    private readonly int _resultCount;

    public HostCall(nint context, Val* args, int argCount, Val* results, int resultCount)
    {
        _context = context;
        _args = args;
        _argCount = argCount;
        _results = results;
        _resultCount = resultCount;
        Run = ComponentRun.Of(context);
    }

    /// <summary>The request or command this call is part of.</summary>
    public ComponentRun Run { get; }

    private Val* Arg(int index, byte kind)
    {
        if (index >= _argCount)
        {
            throw new GuestTrapException($"argument {index} missing");
        }

        var arg = _args + index;
        if (arg->Kind != kind)
        {
            throw new GuestTrapException($"argument {index} is of kind {arg->Kind}, expected {kind}");
        }

        return arg;
    }

    /// <summary>The result slot <paramref name="index"/> (almost always 0).</summary>
    public Val* Result(int index = 0) =>
        index < _resultCount ? _results + index : throw new GuestTrapException($"result {index} not expected by this function's type");

    public bool Bool(int index) => Arg(index, Val.Bool)->Byte != 0;

    public ushort U16(int index) => Arg(index, Val.U16)->UInt16;

    public uint U32(int index) => Arg(index, Val.U32)->UInt32;

    public ulong U64(int index) => Arg(index, Val.U64)->UInt64;

    public string String(int index)
    {
        var name = Arg(index, Val.String)->Name;
        return Encoding.UTF8.GetString(name.Data, checked((int)name.Size));
    }

    /// <summary>A list&lt;u8&gt; argument, copied out (Wasmtime passes it one value per byte).</summary>
    public byte[] Bytes(int index) => Values.ToBytes(Arg(index, Val.List)->Vec);

    /// <summary>A list&lt;u8&gt; argument appended to <paramref name="sink"/> without an intermediate array.</summary>
    public int AppendBytes(int index, IByteSink sink) => Values.CopyTo(Arg(index, Val.List)->Vec, sink);

    public Val* Raw(int index) => index < _argCount ? _args + index : throw new GuestTrapException($"argument {index} missing");

    /// <summary>An option argument's payload, or null for none.</summary>
    public Val* Option(int index) => (Val*)Arg(index, Val.Option)->Pointer;

    /// <summary>The host object behind a resource argument, checked to be of <paramref name="type"/>.</summary>
    public T Resource<T>(int index, ResourceType type)
        where T : class => Run.Table.Get<T>(ResourceRep(Arg(index, Val.Resource), type), type);

    /// <summary>As <see cref="Resource{T}"/> for an <c>own</c> argument: the host takes it out of the table.</summary>
    public T Take<T>(int index, ResourceType type)
        where T : class => Run.Table.Take<T>(ResourceRep(Arg(index, Val.Resource), type), type);

    /// <summary>The object behind a resource value met inside another value (an option's payload, a list's element).</summary>
    public T ResourceIn<T>(Val* value, ResourceType type, bool take)
        where T : class
    {
        if (value->Kind != Val.Resource)
        {
            throw new GuestTrapException($"expected a resource, got kind {value->Kind}");
        }

        var rep = ResourceRep(value, type);
        return take ? Run.Table.Take<T>(rep, type) : Run.Table.Get<T>(rep, type);
    }

    private uint ResourceRep(Val* value, ResourceType type)
    {
        nint host;
        var error = Native.wasmtime_component_resource_any_to_host(_context, value->Pointer, &host);
        if (error != 0)
        {
            throw new GuestTrapException($"not a {type.Name()} the host made: {Native.TakeMessage(error)}");
        }

        try
        {
            if (Native.wasmtime_component_resource_host_type(host) != (uint)type)
            {
                throw new GuestTrapException($"a resource of another type where a {type.Name()} was expected");
            }

            return Native.wasmtime_component_resource_host_rep(host);
        }
        finally
        {
            Native.wasmtime_component_resource_host_delete(host);
        }
    }

    /// <summary>Writes a new resource owned by the guest into <paramref name="slot"/>.</summary>
    public void NewResource(Val* slot, ResourceType type, object value) => Values.Resource(_context, slot, type, Run.Table.Add(type, value));
}

/// <summary>What a guest did wrong: the call traps with this message and that request fails.</summary>
internal sealed class GuestTrapException : Exception
{
    public GuestTrapException(string message)
        : base(message)
    {
    }

    public GuestTrapException()
    {
    }

    public GuestTrapException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// Every host function of every interface, by index: Wasmtime calls one unmanaged entry point
/// with the index as its data, so nothing is allocated per function and nothing can be collected.
/// </summary>
internal static unsafe class HostFunctions
{
    private static readonly Lock Gate = new();
    private static HostFunction[] _functions = [];

    /// <summary>Registers a function; the returned index is what the linker gets as its data.</summary>
    public static nint Register(HostFunction function)
    {
        lock (Gate)
        {
            _functions = [.. _functions, function];
            return _functions.Length - 1;
        }
    }

    public static delegate* unmanaged<nint, nint, nint, Val*, nuint, Val*, nuint, nint> Entry => &Invoke;

    public static delegate* unmanaged<nint, nint, uint, nint> Destructor => &Drop;

    [UnmanagedCallersOnly]
    private static nint Invoke(nint data, nint context, nint type, Val* args, nuint argCount, Val* results, nuint resultCount)
    {
        var function = Volatile.Read(ref _functions)[(int)data];
        try
        {
            var call = new HostCall(context, args, (int)argCount, results, (int)resultCount);
            function(ref call);
            return 0;
        }
        catch (GuestTrapException e)
        {
            return Native.NewError(e.Message);
        }
        catch (GuestExitException e)
        {
            ComponentRun.Of(context).ExitCode = e.Code;
            return Native.NewError($"exit with code {e.Code}");
        }
        catch (Wasi.GuestTimeoutException)
        {
            ComponentRun.Of(context).TimedOut = true;
            return Native.NewError("timed out while blocked in the host");
        }
#pragma warning disable CA1031 // nothing may unwind into Wasmtime: any failure becomes a trap of this request
        catch (Exception e)
#pragma warning restore CA1031
        {
            ComponentRun.Of(context).HostError ??= e.ToString();
            return Native.NewError($"host error: {e.Message}");
        }
    }

    /// <summary>A guest dropped an owned resource: the host forgets it (data is the resource type).</summary>
    [UnmanagedCallersOnly]
    private static nint Drop(nint data, nint context, uint rep)
    {
        try
        {
            ComponentRun.Of(context).Table.Drop(rep, (ResourceType)(uint)data);
            return 0;
        }
#pragma warning disable CA1031 // as above
        catch (Exception e)
#pragma warning restore CA1031
        {
            return Native.NewError(e.Message);
        }
    }
}

/// <summary>A guest called wasi:cli/exit: the run ends with this code.</summary>
internal sealed class GuestExitException(int code) : Exception($"exit {code}")
{
    public int Code { get; } = code;

    public GuestExitException()
        : this(0)
    {
    }
}

/// <summary>Reading and writing Wasmtime's dynamic values.</summary>
internal static unsafe class Values
{
    public static byte[] ToBytes(ValVec list)
    {
        var bytes = new byte[checked((int)list.Size)];
        for (var i = 0; i < bytes.Length; i++)
        {
            var element = list.Data + i;
            if (element->Kind != Val.U8)
            {
                throw new GuestTrapException("expected a list<u8>");
            }

            bytes[i] = element->Byte;
        }

        return bytes;
    }

    public static int CopyTo(ValVec list, IByteSink sink)
    {
        var count = checked((int)list.Size);
        Span<byte> chunk = stackalloc byte[4096];
        for (var at = 0; at < count; at += chunk.Length)
        {
            var n = Math.Min(chunk.Length, count - at);
            var from = list.Data + at;
            for (var i = 0; i < n; i++)
            {
                chunk[i] = from[i].Byte;
            }

            sink.Write(chunk[..n]);
        }

        return count;
    }

    /// <summary>An <c>own</c> handle for the guest to the host resource <paramref name="rep"/> of <paramref name="type"/>.</summary>
    public static void Resource(nint context, Val* slot, ResourceType type, uint rep)
    {
        var host = Native.wasmtime_component_resource_host_new(true, rep, (uint)type);
        try
        {
            nint any;
            Native.Check(Native.wasmtime_component_resource_host_to_any(context, host, &any), "resource");
            slot->Kind = Val.Resource;
            slot->Pointer = any;
        }
        finally
        {
            Native.wasmtime_component_resource_host_delete(host);
        }
    }

    public static void Bool(Val* slot, bool value)
    {
        slot->Kind = Val.Bool;
        slot->Byte = value ? (byte)1 : (byte)0;
    }

    public static void U16(Val* slot, ushort value)
    {
        slot->Kind = Val.U16;
        slot->UInt16 = value;
    }

    public static void U32(Val* slot, uint value)
    {
        slot->Kind = Val.U32;
        slot->UInt32 = value;
    }

    public static void U64(Val* slot, ulong value)
    {
        slot->Kind = Val.U64;
        slot->UInt64 = value;
    }

    public static void String(Val* slot, string value) => Name(slot, Val.String, value);

    public static void Enum(Val* slot, string name) => Name(slot, Val.Enum, name);

    private static void Name(Val* slot, byte kind, string value)
    {
        var count = Encoding.UTF8.GetByteCount(value);
        slot->Kind = kind;
        var name = &slot->Name;
        {
            Native.wasm_byte_vec_new_uninitialized(name, (nuint)count);
            Encoding.UTF8.GetBytes(value, new Span<byte>(name->Data, count));
        }
    }

    /// <summary>A list&lt;u8&gt;: one value per byte, as the C API wants it.</summary>
    public static void Bytes(Val* slot, ReadOnlySpan<byte> bytes)
    {
        slot->Kind = Val.List;
        var list = &slot->Vec;
        {
            Native.wasmtime_component_vallist_new_uninit(list, (nuint)bytes.Length);
            var data = list->Data;
            for (var i = 0; i < bytes.Length; i++)
            {
                data[i].Kind = Val.U8;
                data[i].Byte = bytes[i];
            }
        }
    }

    /// <summary>A list of <paramref name="count"/> values, each written by <paramref name="element"/>.</summary>
    public static void List(Val* slot, int count, ElementWriter element, object? state = null)
    {
        slot->Kind = Val.List;
        var list = &slot->Vec;
        {
            Native.wasmtime_component_vallist_new_uninit(list, (nuint)count);
            for (var i = 0; i < count; i++)
            {
                element(list->Data + i, i, state);
            }
        }
    }

    public static void Tuple(Val* slot, int count, ElementWriter element, object? state = null)
    {
        slot->Kind = Val.Tuple;
        var tuple = &slot->Vec;
        {
            Native.wasmtime_component_valtuple_new_uninit(tuple, (nuint)count);
            for (var i = 0; i < count; i++)
            {
                element(tuple->Data + i, i, state);
            }
        }
    }

    /// <summary>A record: its fields in declaration order.</summary>
    public static void Record(Val* slot, ReadOnlySpan<string> names, ElementWriter field, object? state = null)
    {
        slot->Kind = Val.Record;
        var record = &slot->Vec;
        {
            Native.wasmtime_component_valrecord_new_uninit(record, (nuint)names.Length);
            var entries = (RecordEntry*)record->Data;
            for (var i = 0; i < names.Length; i++)
            {
                var bytes = Encoding.UTF8.GetBytes(names[i]);
                fixed (byte* p = bytes)
                {
                    Native.wasm_byte_vec_new(&entries[i].Name, (nuint)bytes.Length, p);
                }

                field(&entries[i].Value, i, state);
            }
        }
    }

    public static void None(Val* slot)
    {
        slot->Kind = Val.Option;
        slot->Pointer = 0;
    }

    /// <summary>An option&lt;string&gt;: none for null.</summary>
    public static void OptionalString(Val* slot, string? value)
    {
        if (value is null)
        {
            None(slot);
            return;
        }

        Val text = default;
        String(&text, value);
        Some(slot, &text);
    }

    /// <summary>Moves <paramref name="payload"/> (built on the stack) into Wasmtime's heap, as option, result and variant payloads must be.</summary>
    private static Val* Box(Val* payload) => payload is null ? null : (Val*)Native.wasmtime_component_val_new(payload);

    public static void Some(Val* slot, Val* payload)
    {
        slot->Kind = Val.Option;
        slot->Pointer = (nint)Box(payload);
    }

    public static void Ok(Val* slot, Val* payload = null) => Result(slot, true, payload);

    public static void Err(Val* slot, Val* payload = null) => Result(slot, false, payload);

    private static void Result(Val* slot, bool ok, Val* payload)
    {
        var boxed = Box(payload);
        slot->Kind = Val.Result;
        slot->Byte = ok ? (byte)1 : (byte)0;
        slot->ResultPayload = boxed;
    }

    /// <summary>A variant case, with its payload when it has one.</summary>
    public static void Variant(Val* slot, string name, Val* payload = null)
    {
        var boxed = Box(payload);
        Name(slot, Val.Variant, name);
        slot->VariantPayload = boxed;
    }

    /// <summary>The case name of a variant or enum value.</summary>
    public static string CaseOf(Val* value) =>
        value->Kind is Val.Variant or Val.Enum
            ? Encoding.UTF8.GetString(value->Name.Data, checked((int)value->Name.Size))
            : throw new GuestTrapException($"expected a variant or enum, got kind {value->Kind}");

    public static string StringOf(Val* value) =>
        value->Kind == Val.String
            ? Encoding.UTF8.GetString(value->Name.Data, checked((int)value->Name.Size))
            : throw new GuestTrapException($"expected a string, got kind {value->Kind}");

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Val* Payload(Val* variant) => variant->VariantPayload;
}

/// <summary>Writes element <paramref name="index"/> of a value being built into <paramref name="slot"/>.</summary>
internal unsafe delegate void ElementWriter(Val* slot, int index, object? state);

/// <summary>Where a guest's bytes go, a chunk at a time.</summary>
internal interface IByteSink
{
    void Write(ReadOnlySpan<byte> bytes);
}

/// <summary>GCHandle helpers for the store's data.</summary>
internal static class StoreData
{
    public static nint Pin(object value) => GCHandle.ToIntPtr(GCHandle.Alloc(value));

    public static object Target(nint handle) => GCHandle.FromIntPtr(handle).Target!;

    public static void Free(nint handle) => GCHandle.FromIntPtr(handle).Free();
}
