using System.Runtime.InteropServices;
using System.Text;

namespace Outpost.Wasm.Components;

/// <summary>
/// Wasmtime's C API for the component model, as exported by the libwasmtime the Wasmtime package
/// ships (v50: headers under crates/c-api/include/wasmtime/component/). The package's managed
/// binding has no resources, and wasi:http/proxy is all resources, so the component host talks to
/// the C API itself: its own engine and stores, host functions as one unmanaged entry point.
/// </summary>
internal static unsafe partial class Native
{
    private const string Lib = "wasmtime";

    // ---- config and engine
    [LibraryImport(Lib)] public static partial nint wasm_config_new();
    [LibraryImport(Lib)] public static partial void wasmtime_config_epoch_interruption_set(nint config, [MarshalAs(UnmanagedType.U1)] bool enable);
    [LibraryImport(Lib)] public static partial void wasmtime_config_max_wasm_stack_set(nint config, nuint size);
    [LibraryImport(Lib)] public static partial void wasmtime_config_cranelift_opt_level_set(nint config, byte level);
    [LibraryImport(Lib)] public static partial void wasmtime_config_memory_init_cow_set(nint config, [MarshalAs(UnmanagedType.U1)] bool enable);
    [LibraryImport(Lib)] public static partial void wasmtime_config_wasm_component_model_set(nint config, [MarshalAs(UnmanagedType.U1)] bool enable);
    [LibraryImport(Lib)] public static partial void wasmtime_config_parallel_compilation_set(nint config, [MarshalAs(UnmanagedType.U1)] bool enable);
    [LibraryImport(Lib)] public static partial nint wasmtime_pooling_allocation_config_new();
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_delete(nint pool);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_total_component_instances_set(nint pool, uint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_total_core_instances_set(nint pool, uint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_total_memories_set(nint pool, uint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_total_tables_set(nint pool, uint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_max_core_instances_per_component_set(nint pool, uint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_max_memories_per_component_set(nint pool, uint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_max_tables_per_component_set(nint pool, uint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_max_component_instance_size_set(nint pool, nuint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_max_core_instance_size_set(nint pool, nuint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_max_memory_size_set(nint pool, nuint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(nint pool, nuint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_table_keep_resident_set(nint pool, nuint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_config_decommit_batch_size_set(nint pool, nuint value);
    [LibraryImport(Lib)] public static partial void wasmtime_pooling_allocation_strategy_set(nint config, nint pool);
    [LibraryImport(Lib)] public static partial nint wasm_engine_new_with_config(nint config);
    [LibraryImport(Lib)] public static partial void wasm_engine_delete(nint engine);
    [LibraryImport(Lib)] public static partial void wasmtime_engine_increment_epoch(nint engine);

    // ---- stores
    [LibraryImport(Lib)] public static partial nint wasmtime_store_new(nint engine, nint data, nint finalizer);
    [LibraryImport(Lib)] public static partial nint wasmtime_store_context(nint store);
    [LibraryImport(Lib)] public static partial void wasmtime_store_delete(nint store);
    [LibraryImport(Lib)] public static partial void wasmtime_store_limiter(nint store, long memorySize, long tableElements, long instances, long tables, long memories);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial nint wasmtime_context_get_data(nint context);
    [LibraryImport(Lib)] public static partial void wasmtime_context_set_epoch_deadline(nint context, ulong ticksBeyondCurrent);

    // ---- errors and byte vectors
    [LibraryImport(Lib)] public static partial void wasmtime_error_message(nint error, ByteVec* message);
    [LibraryImport(Lib)] public static partial void wasmtime_error_delete(nint error);
    [LibraryImport(Lib)] public static partial nint wasmtime_error_new(byte* message);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial void wasm_byte_vec_new(ByteVec* output, nuint size, byte* data);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial void wasm_byte_vec_new_uninitialized(ByteVec* output, nuint size);
    [LibraryImport(Lib)] public static partial void wasm_byte_vec_delete(ByteVec* vec);

    // ---- components
    [LibraryImport(Lib)] public static partial nint wasmtime_component_new(nint engine, byte* bytes, nuint length, nint* component);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_serialize(nint component, ByteVec* output);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_deserialize_file(nint engine, byte* path, nint* component);
    [LibraryImport(Lib)] public static partial void wasmtime_component_delete(nint component);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_type(nint component);
    [LibraryImport(Lib)] public static partial void wasmtime_component_type_delete(nint type);
    [LibraryImport(Lib)] public static partial nuint wasmtime_component_type_import_count(nint type, nint engine);
    [LibraryImport(Lib)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool wasmtime_component_type_import_nth(nint type, nint engine, nuint nth, byte** name, nuint* nameLength, nint* external);
    [LibraryImport(Lib)] public static partial nuint wasmtime_component_type_export_count(nint type, nint engine);
    [LibraryImport(Lib)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool wasmtime_component_type_export_nth(nint type, nint engine, nuint nth, byte** name, nuint* nameLength, nint* external);
    [LibraryImport(Lib)] public static partial nuint wasmtime_component_instance_type_export_count(nint type, nint engine);
    [LibraryImport(Lib)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool wasmtime_component_instance_type_export_nth(nint type, nint engine, nuint nth, byte** name, nuint* nameLength, nint* external);
    [LibraryImport(Lib)] public static partial void wasmtime_component_extern_type(nint external, ComponentItem* item);
    [LibraryImport(Lib)] public static partial void wasmtime_component_extern_delete(nint external);
    [LibraryImport(Lib)] public static partial void wasmtime_component_item_delete(ComponentItem* item);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_get_export_index(nint component, nint instanceIndex, byte* name, nuint length);
    [LibraryImport(Lib)] public static partial void wasmtime_component_export_index_delete(nint index);

    // ---- linking and instances
    [LibraryImport(Lib)] public static partial nint wasmtime_component_linker_new(nint engine);
    [LibraryImport(Lib)] public static partial void wasmtime_component_linker_delete(nint linker);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_linker_root(nint linker);
    [LibraryImport(Lib)] public static partial void wasmtime_component_linker_instance_delete(nint instance);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_linker_instance_add_instance(nint instance, byte* name, nuint length, nint* child);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_linker_instance_add_func(nint instance, byte* name, nuint length, delegate* unmanaged<nint, nint, nint, Val*, nuint, Val*, nuint, nint> callback, nint data, nint finalizer);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_linker_instance_add_resource(nint instance, byte* name, nuint length, nint resourceType, delegate* unmanaged<nint, nint, uint, nint> destructor, nint data, nint finalizer);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_linker_instantiate(nint linker, nint context, nint component, InstanceHandle* instance);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_instance_get_export_index(InstanceHandle* instance, nint context, nint instanceIndex, byte* name, nuint length);
    [LibraryImport(Lib)] [return: MarshalAs(UnmanagedType.U1)] public static partial bool wasmtime_component_instance_get_func(InstanceHandle* instance, nint context, nint index, FuncHandle* func);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_func_call(FuncHandle* func, nint context, Val* args, nuint argCount, Val* results, nuint resultCount);
    [LibraryImport(Lib)] public static partial nint wasmtime_component_func_post_return(FuncHandle* func, nint context);

    // ---- resources
    [LibraryImport(Lib)] public static partial nint wasmtime_component_resource_type_new_host(uint type);
    [LibraryImport(Lib)] public static partial void wasmtime_component_resource_type_delete(nint type);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial nint wasmtime_component_resource_host_new([MarshalAs(UnmanagedType.U1)] bool owned, uint rep, uint type);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial uint wasmtime_component_resource_host_rep(nint host);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial uint wasmtime_component_resource_host_type(nint host);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial void wasmtime_component_resource_host_delete(nint host);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial nint wasmtime_component_resource_any_to_host(nint context, nint any, nint* host);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial nint wasmtime_component_resource_host_to_any(nint context, nint host, nint* any);

    // ---- values
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial void wasmtime_component_vallist_new_uninit(ValVec* output, nuint size);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial void wasmtime_component_valtuple_new_uninit(ValVec* output, nuint size);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial void wasmtime_component_valrecord_new_uninit(ValVec* output, nuint size);
    [LibraryImport(Lib)] [SuppressGCTransition] public static partial nint wasmtime_component_val_new(Val* value);
    [LibraryImport(Lib)] public static partial void wasmtime_component_val_delete(Val* value);

    /// <summary>An error's message, freeing the error.</summary>
    public static string TakeMessage(nint error)
    {
        ByteVec message;
        wasmtime_error_message(error, &message);
        var text = Encoding.UTF8.GetString(message.Data, (int)message.Size);
        wasm_byte_vec_delete(&message);
        wasmtime_error_delete(error);
        return text;
    }

    /// <summary>Throws <see cref="ComponentException"/> with the error's message when there is one.</summary>
    public static void Check(nint error, string what)
    {
        if (error != 0)
        {
            throw new ComponentException($"{what}: {TakeMessage(error)}");
        }
    }

    /// <summary>A new error (a trap, when returned from a host function) carrying <paramref name="message"/>.</summary>
    public static nint NewError(string message)
    {
        var bytes = Encoding.UTF8.GetBytes(message + "\0");
        fixed (byte* p = bytes)
        {
            return wasmtime_error_new(p);
        }
    }
}

/// <summary>wasm_byte_vec_t and wasm_name_t: a size and a pointer.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct ByteVec
{
    public nuint Size;
    public byte* Data;
}

/// <summary>The vectors of <see cref="Val"/> (list, tuple) and of record entries: a size and a pointer.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct ValVec
{
    public nuint Size;
    public Val* Data;
}

/// <summary>wasmtime_component_instance_t.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct InstanceHandle
{
    public ulong StoreId;
    public uint Private;
}

/// <summary>wasmtime_component_func_t.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct FuncHandle
{
    public ulong StoreId;
    public uint Private1;
    public uint Private2;
}

/// <summary>wasmtime_component_item_t: a kind, then a pointer (or a valtype, never used here).</summary>
[StructLayout(LayoutKind.Explicit, Size = 24)]
internal struct ComponentItem
{
    public const byte Component = 0;
    public const byte ComponentInstance = 1;
    public const byte Module = 2;
    public const byte ComponentFunc = 3;
    public const byte Resource = 4;
    public const byte CoreFunc = 5;
    public const byte Type = 6;

    [FieldOffset(0)] public byte Kind;
    [FieldOffset(8)] public nint Pointer;
}

/// <summary>
/// wasmtime_component_val_t: a kind byte, then a 24-byte union (the largest member is a variant,
/// a name and a pointer). 32 bytes in all.
/// </summary>
[StructLayout(LayoutKind.Explicit, Size = 32)]
internal unsafe struct Val
{
    public const byte Bool = 0;
    public const byte S8 = 1;
    public const byte U8 = 2;
    public const byte S16 = 3;
    public const byte U16 = 4;
    public const byte S32 = 5;
    public const byte U32 = 6;
    public const byte S64 = 7;
    public const byte U64 = 8;
    public const byte F32 = 9;
    public const byte F64 = 10;
    public const byte Char = 11;
    public const byte String = 12;
    public const byte List = 13;
    public const byte Record = 14;
    public const byte Tuple = 15;
    public const byte Variant = 16;
    public const byte Enum = 17;
    public const byte Option = 18;
    public const byte Result = 19;
    public const byte Flags = 20;
    public const byte Resource = 21;

    [FieldOffset(0)] public byte Kind;
    [FieldOffset(8)] public byte Byte;
    [FieldOffset(8)] public ushort UInt16;
    [FieldOffset(8)] public uint UInt32;
    [FieldOffset(8)] public ulong UInt64;
    [FieldOffset(8)] public ByteVec Name;
    [FieldOffset(8)] public ValVec Vec;
    [FieldOffset(8)] public nint Pointer;

    /// <summary>A variant's payload pointer (after its 16-byte discriminant name).</summary>
    [FieldOffset(24)] public Val* VariantPayload;

    /// <summary>A result's payload pointer (after its bool, padded to 8).</summary>
    [FieldOffset(16)] public Val* ResultPayload;
}

/// <summary>A record's field: its name, then its value.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RecordEntry
{
    public ByteVec Name;
    public Val Value;
}

/// <summary>A failure of the component machinery itself (not of a guest), with Wasmtime's message.</summary>
public sealed class ComponentException : Exception
{
    public ComponentException(string message)
        : base(message)
    {
    }

    public ComponentException()
    {
    }

    public ComponentException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
